#!/usr/bin/env bash
# Drop-in for the restart guide's scripts/up.sh: runs `bookstore up`, passing arguments through.
exec "$(dirname "${BASH_SOURCE[0]}")/bookstore" up "$@"
