#!/usr/bin/env bash
# Drop-in for the restart guide's scripts/down.sh: runs `bookstore down`, passing arguments through.
exec "$(dirname "${BASH_SOURCE[0]}")/bookstore" down "$@"
