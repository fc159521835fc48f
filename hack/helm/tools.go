//go:build tools

// Pins the Helm CLI that hack/helm.sh builds: `go build helm.sh/helm/v3/cmd/helm` in this module
// resolves every dependency from go.sum, so the binary is the same on every machine.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
