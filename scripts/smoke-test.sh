#!/usr/bin/env bash
# Drop-in for the restart guide's scripts/smoke-test.sh: runs `bookstore smoke`, passing arguments through.
exec "$(dirname "${BASH_SOURCE[0]}")/bookstore" smoke "$@"
