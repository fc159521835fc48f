# The two commands of the README quickstart, plus helpers. Everything they need is installed by
# the scripts under hack/ and cached under ~/.cache/prospector.
.PHONY: dev dev-down test crds deps openapi

## Bring up a local Prospector: control plane, Postgres, CRDs and the four tiers.
dev:
	bash hack/dev.sh up

## Stop the local environment.
dev-down:
	bash hack/dev.sh down

## Run the whole test suite (what CI runs).
test:
	bash hack/test.sh

## Regenerate charts/prospector/crds/ from the Rust types.
crds:
	cargo run --quiet -p prospector-crds --bin crdgen

## Fetch or build every pinned dependency.
deps:
	bash hack/deps.sh

## Regenerate docs/openapi.json from the REST server's handlers.
openapi:
	cargo run --quiet -p prospector-apiserver --bin openapi
