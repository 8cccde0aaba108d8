#!/bin/sh
# The containers' entry point: `ecg-worklist-entrypoint ARGS...` runs `ecg-worklist ARGS...`.
#
# Secrets come as files (compose secrets, Kubernetes secret volumes), never as image layers:
# for every ECGWL_<NAME>_FILE=/path in the environment, ECGWL_<NAME> is set to the file's
# content (trailing newlines dropped) and the _FILE variable is removed, e.g.
#   ECGWL_DATABASE_URL_FILE=/run/secrets/ecgwl_database_url
# A _FILE that cannot be read stops the container with a one-line message (exit 78, EX_CONFIG).
set -eu

for name in $(env | sed -n 's/^\(ECGWL_[A-Z0-9_]*\)_FILE=.*$/\1/p'); do
    eval "file=\${${name}_FILE}"
    if [ ! -r "$file" ]; then
        echo "ecg-worklist: ${name}_FILE names ${file}, which cannot be read" >&2
        exit 78
    fi
    # The substitution's output is not parsed again by the shell: quotes in a secret are safe.
    eval "${name}=\$(cat \"\$file\")"
    export "${name?}"
    unset "${name}_FILE"
done

exec ecg-worklist "$@"
