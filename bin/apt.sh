# Sourced by bin/setup: apt-get that waits while another package install holds apt's lock.
sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
APT_LOCK_WAIT_SECONDS="${APT_LOCK_WAIT_SECONDS:-600}"

apt_get() {
  local waited=0 output
  while true; do
    if output=$(DEBIAN_FRONTEND=noninteractive $sudo apt-get -qq "$@" 2>&1); then return 0; fi
    if ! grep -qE "Could not get lock|Unable to (acquire|lock)" <<<"$output"; then
      echo "$output" >&2; return 1
    fi
    if [ "$waited" -ge "$APT_LOCK_WAIT_SECONDS" ]; then
      echo "Gave up after ${waited} s waiting for apt's lock:" >&2; echo "$output" >&2; return 1
    fi
    [ "$waited" -eq 0 ] && echo "Waiting for another package install to release apt's lock" \
      "($(grep -oE "held by process [0-9]+( \([^)]*\))?" <<<"$output" | head -1 || true)," \
      "up to ${APT_LOCK_WAIT_SECONDS} s)..."
    sleep 5; waited=$((waited + 5))
  done
}
