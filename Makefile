# The two commands of the README: `make demo` (the main job) and `make test` (everything).
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help demo test test-stress soak down status controlplane crds manifests lint fmt bench bench-operator bench-api bench-migrations bench-abuse bench-release bench-backups bench-compare

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

demo: ## the release story on the local cluster: install, upgrade, rollback, failed migration
	@bash e2e/scripts/demo.sh

test: ## install what is missing, build, run fmt, clippy and every test
	@bash e2e/scripts/test.sh

test-stress: ## `make test` with one core kept busy by stress-ng (LC_STRESS_RUNS=3 for three runs)
	@bash e2e/scripts/test-stress.sh

soak: ## many randomized operation sequences against a release (LC_SEQUENCES, LC_SEQUENCE_STEPS)
	@bash e2e/scripts/soak.sh

down: ## stop everything the scripts started
	@bash e2e/scripts/cluster.sh down
	@bash e2e/scripts/services.sh down

status: ## what is running
	@bash e2e/scripts/cluster.sh status
	@bash e2e/scripts/services.sh status

controlplane: ## build the control plane binaries into the cache (done by demo and test)
	@bash e2e/scripts/build-controlplane.sh

crds: ## regenerate the CRD YAML from crds/src (config/crd and the Helm chart)
	cargo run -q -p listacompra-crds --bin crdgen

manifests: ## render config/rbac and config/manager from the Helm chart (a test fails when out of date)
	@bash e2e/scripts/manifests.sh

bench: bench-operator bench-api bench-migrations bench-abuse bench-release bench-backups bench-compare ## every benchmark (prints tables)

bench-api: ## load-test the API server on loopback (prints a table)
	cargo bench -p listacompra-api --bench load

bench-migrations: ## write latency during every migration step up and down (prints a table)
	cargo bench -p listacompra-api --bench migrations

bench-abuse: ## the API's legitimate traffic and memory during attacks on loopback (prints a table)
	cargo bench -p listacompra-api --bench abuse

bench-release: ## the API under load during a release on the local cluster (prints a table)
	cargo build --profile bench --locked -p listacompra-api -p listacompra-operator --bins
	cargo bench --locked -p e2e --bench release_load

bench-backups: ## pgBackRest backup and restore times for a database of a stated size (prints a table)
	cargo bench --locked -p e2e --bench backups

bench-compare: ## the API beside Node + Express and pgbench; the operator beside Argo Rollouts and bare Deployments (LC_BENCH_OBJECTS, default 1000; prints tables)
	cargo bench --locked -p listacompra-api --bench compare
	cargo bench --locked -p listacompra-operator --bench compare

bench-operator: ## measure the operator on the local cluster (prints a table)
	cargo bench -p listacompra-operator --bench operator

lint: ## format check and clippy only
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt: ## format the code
	cargo fmt --all
