#!/bin/sh
# First start: initdb into the (empty) volume with the official image's settings, then
# run the command (`postgres …`).
set -eu

if [ ! -s "${PGDATA}/PG_VERSION" ]; then
    auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
    pwfile=""
    if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
        pwfile="${POSTGRES_PASSWORD_FILE}"
    elif [ -n "${POSTGRES_PASSWORD:-}" ]; then
        pwfile="$(mktemp)"
        printf '%s\n' "${POSTGRES_PASSWORD}" >"${pwfile}"
    fi
    if [ "${auth}" != trust ] && [ -z "${pwfile}" ]; then
        echo "paywire-postgres: set POSTGRES_PASSWORD_FILE (or POSTGRES_PASSWORD), or POSTGRES_HOST_AUTH_METHOD=trust for development" >&2
        exit 1
    fi
    echo "paywire-postgres: initialising ${PGDATA} (host auth: ${auth})"
    initdb --username=postgres --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host="${auth}" ${pwfile:+--pwfile="${pwfile}"} >/dev/null
    if [ -n "${POSTGRES_PASSWORD:-}" ] && [ -z "${POSTGRES_PASSWORD_FILE:-}" ]; then
        rm -f "${pwfile}"
    fi
    # Like the official image: accept TCP clients from anywhere the listener reaches,
    # with the chosen method (compose narrows listen_addresses to 127.0.0.1).
    printf 'host all all all %s\n' "${auth}" >>"${PGDATA}/pg_hba.conf"
    printf "listen_addresses = '*'\n" >>"${PGDATA}/postgresql.conf"
fi

if [ "${1:-}" = postgres ]; then
    shift
    exec postgres "$@"
fi
exec "$@"
