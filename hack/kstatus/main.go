// Command kstatus reads one Kubernetes object as JSON on stdin and prints what kstatus
// (sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute, the library behind `flux ... --wait`,
// Flux's health checks and `kpt live status`) computes for it, as one JSON object:
//
//	{"status": "InProgress", "message": "...", "conditions": [...]}
//
// Serinus' tests run it over ModelDeployments recorded from real rollouts
// (docs/gitops.md). Exit 1: the input is not one JSON object, or kstatus fails on it.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type condition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

type output struct {
	Status     string      `json:"status"`
	Message    string      `json:"message"`
	Conditions []condition `json:"conditions"`
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	data, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	// Decoded as a client decodes what the API server sends (integers as int64).
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(data); err != nil {
		return fmt.Errorf("stdin is not one Kubernetes object as JSON: %w", err)
	}
	res, err := status.Compute(u)
	if err != nil {
		return err
	}
	result := output{Status: res.Status.String(), Message: res.Message, Conditions: []condition{}}
	for _, c := range res.Conditions {
		result.Conditions = append(result.Conditions, condition{
			Type: c.Type.String(), Status: string(c.Status), Reason: c.Reason, Message: c.Message,
		})
	}
	return json.NewEncoder(out).Encode(result)
}
