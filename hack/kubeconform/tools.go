//go:build tools

// Pins the kubeconform CLI that hack/kubeconform.sh builds, every dependency from go.sum.
package tools

import _ "github.com/yannh/kubeconform/cmd/kubeconform"
