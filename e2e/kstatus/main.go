// kstatus-check: computes the kstatus result (sigs.k8s.io/cli-utils/pkg/kstatus, what Flux
// and Helm 4 --wait use) of Kubernetes objects read from standard input as a JSON array, and
// prints one JSON line per object: {"name": ..., "status": ..., "message": ...}.
// The e2e tests feed it real ListaCompraRelease objects in each phase.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	data, err := io.ReadAll(os.Stdin)
	var objects []interface{}
	if err == nil {
		// Kubernetes' JSON decoding: integers stay int64, as unstructured objects need.
		err = utiljson.Unmarshal(data, &objects)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "kstatus-check: reading a JSON array of objects from stdin: %v\n", err)
		os.Exit(2)
	}
	out := json.NewEncoder(os.Stdout)
	for _, item := range objects {
		object, ok := item.(map[string]interface{})
		if !ok {
			fmt.Fprintf(os.Stderr, "kstatus-check: not an object: %v\n", item)
			os.Exit(2)
		}
		u := &unstructured.Unstructured{Object: object}
		res, err := status.Compute(u)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kstatus-check: %s: %v\n", u.GetName(), err)
			os.Exit(1)
		}
		_ = out.Encode(result{Name: u.GetName(), Status: res.Status.String(), Message: res.Message})
	}
}
