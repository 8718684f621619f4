#!/usr/bin/env bash
# Open a predict batch's report.html in headless Chromium and save a screenshot of it, to check
# the page as a browser renders it (no network: --host-resolver-rules refuses every host).
#   scripts/screenshot_report.sh demo_out/predictions/report.html [screenshot.png]
# Needs Debian's chromium (apt-get install chromium) or a chromium/google-chrome on PATH.
set -euo pipefail
report="${1:?usage: $0 REPORT.html [SCREENSHOT.png]}"
shot="${2:-${report%.html}.png}"
browser="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
if [[ -z "$browser" ]]; then
    echo "screenshot_report.sh: no chromium found; install it with: apt-get install chromium" >&2
    exit 2
fi
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,1600 \
    --host-resolver-rules="MAP * ~NOTFOUND" --virtual-time-budget=5000 \
    --screenshot="$(realpath -m "$shot")" "file://$(realpath "$report")" 2>/dev/null
echo "screenshot: $shot"
