# Thin wrappers around ./dev, which owns the set-up logic.
.PHONY: run test env bench

run:
	./dev run

test:
	./dev test

env:
	./dev env

bench:
	./dev env && .venv/bin/python bench/simulate.py
