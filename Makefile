# Make targets for bookstore. Each builds the binary if needed (scripts/bookstore).
.PHONY: up down recover smoke connectors test dry-run demo demo-watch bench watch

up:          ## bootstrap the stack if there is none (or it is half done), else restart only what is broken
	scripts/bookstore up

recover:     ## ztunnel, every workload, the connectors, then the smoke test
	scripts/bookstore recover

connectors:  ## re-register the Debezium connectors only
	scripts/bookstore connectors

smoke:       ## check every route
	scripts/bookstore smoke

down:        ## delete the kind cluster (asks first)
	scripts/bookstore down

dry-run:     ## print what recover would run, change nothing
	scripts/bookstore recover --dry-run

test:        ## what CI runs: install the clients, fmt, clippy, tests
	bash .ci/run

demo:        ## the broken stack after a simulated Docker restart, then `bookstore up` (no Docker needed)
	bash scripts/demo.sh

demo-watch:  ## `bookstore watch` heals a simulated Docker Desktop restart while you do nothing (no Docker needed)
	bash scripts/demo-watch.sh

watch:       ## heal the stack by itself after every Docker restart (foreground; Ctrl-C to stop)
	scripts/bookstore watch

bench:       ## the restart guide vs bookstore recover, watch, and the bootstrap (tiers, graph, a naive script; cold and warm), on the simulator (BENCH_ARGS="--only bootstrap --runs 1")
	cargo build --release -p bookstore -p bookstore-sim && target/release/bookstore-sim bench $(BENCH_ARGS)
