#!/usr/bin/env bash
# Print the environment for a sweep against the local services:  eval "$(infra/local/env.sh)"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
print_env
