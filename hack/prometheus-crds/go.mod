module prospector.dev/hack/prometheus-crds

go 1.26

// Only the module's files are used (its example/prometheus-operator-crd/), never its packages.
require github.com/prometheus-operator/prometheus-operator v0.85.0
