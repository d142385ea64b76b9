"""What knows mitmproxy: the addon it loads (`pipeline`), the runner of its hooks, the
stages each call goes through, and the patches to mitmproxy's own layers."""
