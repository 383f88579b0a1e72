#!/usr/bin/env sh
# The studio's browser test drives Debian's Chromium through its ChromeDriver (nothing downloads a browser).
# Never fails the set-up: without them that one test reports what is missing.
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing chromium and chromium-driver for the studio's browser test"
    (apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null 2>&1 \
        || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null 2>&1)) \
        || echo "could not install chromium: the studio's browser test will fail"
else
    echo "chromium/chromedriver not found (apt-get install chromium chromium-driver): the studio's browser test will fail"
fi
exit 0
