#!/bin/sh
# init-secrets.sh [DIR]: random passwords for the compose stack, one file each, made once.
#
# DIR (default: deploy/secrets beside this script) gets postgres_password,
# aggregator_database_url and NAME_password for each node: the password that protects the
# node's keys and its web pages. Files are 0600; those the nodes read are owned by the
# containers' user (uid 10001), the database's by root (its entry point reads it as root).
# Back these files up with the volumes: without its password a node's keys are lost.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$here/secrets}
umask 077
mkdir -p "$dir"
new() { [ -s "$dir/$1" ] || openssl rand -hex 24 > "$dir/$1"; }
new postgres_password
for node in aggregator buyer owner-1 owner-2 owner-3; do new "${node}_password"; done
if [ ! -s "$dir/aggregator_database_url" ]; then
    printf 'postgresql+psycopg://deltaml:%s@postgres:5432/deltaml?sslmode=verify-full&sslrootcert=/certs/ca.crt\n' \
        "$(cat "$dir/postgres_password")" > "$dir/aggregator_database_url"
fi
chmod 0600 "$dir"/*
# The containers run as uid 10001: with rootful podman/docker they read the files as that uid;
# rootless podman maps it, so chown through `podman unshare` there.
owned() { for f in aggregator_database_url aggregator_password buyer_password owner-1_password owner-2_password owner-3_password; do "$@" 10001:10001 "$dir/$f"; done; }
if [ "$(id -u)" = 0 ]; then owned chown; else owned podman unshare chown; fi
echo "secrets in $dir"
