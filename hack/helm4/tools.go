//go:build tools

// Package tools pins Helm 4's CLI for hack/helm4.sh.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
