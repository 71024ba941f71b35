//go:build tools

// Package tools keeps the control-plane commands in go.mod for `go mod tidy`;
// hack/kube/build.sh builds them by import path.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
