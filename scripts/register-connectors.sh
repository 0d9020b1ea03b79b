#!/usr/bin/env bash
# Drop-in for the restart guide's scripts/register-connectors.sh: runs `bookstore connectors`, passing arguments through.
exec "$(dirname "${BASH_SOURCE[0]}")/bookstore" connectors "$@"
