# Thin wrappers around ./dev, which installs what is missing on first use.
.PHONY: demo test bench setup
demo:
	./dev demo
test:
	./dev test
bench:
	./dev bench
setup:
	./dev setup
