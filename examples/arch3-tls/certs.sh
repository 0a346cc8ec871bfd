#!/usr/bin/env bash
# Makes the lab PKI of this example in certs/ next to this script, with the
# `smart-connector` on PATH (`cargo install --path connector`, or
# PATH="$PWD/target/release:$PATH" from the workspace root after a release build):
#   certs/ca.crt, ca.key          the lab CA (keep ca.key to yourself)
#   certs/server.crt, server.key  the servers' certificate (po-a's and po-b's addresses), also
#                                 their identity towards each other on the sync link
#   certs/sc-?-modbus.*           each connector's Modbus/TCP Security port (its host's address)
#   certs/sc-a.*, certs/sc-b.*    the connectors' client certificates (licences CA-1, CA-2)
#   certs/operator.*, viewer.*    Modbus/TCP Security masters with roles operator and viewer
#   certs/opcua-sc-?/             each connector's OPC UA application instance certificate and
#                                 trust list (own/, private/, trusted/, rejected/)
# Run it again with --force to replace every file.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="$here/certs"
force=()
if [ "${1:-}" = "--force" ]; then force=(--force); fi
command -v smart-connector >/dev/null || {
  echo "certs.sh: smart-connector is not on PATH (build it: cargo build --release -p smart-connector, then PATH=\"\$PWD/target/release:\$PATH\")" >&2
  exit 1
}
smart-connector certs init --dir "$dir" "${force[@]}" --ip 127.0.1.1 --ip 127.0.2.1
smart-connector certs server --dir "$dir" --name sc-a-modbus --ip 127.0.3.1 "${force[@]}"
smart-connector certs server --dir "$dir" --name sc-b-modbus --ip 127.0.4.1 "${force[@]}"
smart-connector certs client --dir "$dir" --name sc-a "${force[@]}"
smart-connector certs client --dir "$dir" --name sc-b "${force[@]}"
smart-connector certs client --dir "$dir" --name operator --role operator "${force[@]}"
smart-connector certs client --dir "$dir" --name viewer --role viewer "${force[@]}"
smart-connector certs opcua --dir "$dir/opcua-sc-a" --uri urn:smart-connector:sc-a --ip 127.0.3.1 "${force[@]}"
smart-connector certs opcua --dir "$dir/opcua-sc-b" --uri urn:smart-connector:sc-b --ip 127.0.4.1 "${force[@]}"
echo "certs.sh: lab PKI in $dir"
