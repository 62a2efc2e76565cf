// Command kstatus prints the kstatus status (sigs.k8s.io/cli-utils/pkg/kstatus, what Flux, kpt
// and Helm 4's watcher wait on) of each Kubernetes object it reads: JSON or YAML on stdin, one
// object, a List, or several YAML documents. One line per object, tab-separated:
//
//	KIND	NAMESPACE/NAME	STATUS	MESSAGE
//
// STATUS is InProgress, Failed, Current, Terminating, NotFound or Unknown. It exits 1 when the
// input cannot be read.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "usage: kstatus < objects.json|yaml (reads stdin, takes no arguments)")
		os.Exit(2)
	}
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	decoder := yaml.NewYAMLOrJSONDecoder(bufio.NewReader(in), 4096)
	for {
		var raw json.RawMessage
		if err := decoder.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if len(raw) == 0 || string(raw) == "null" {
			continue
		}
		// Decoded as the API machinery does, so that numbers such as metadata.generation are int64.
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			return err
		}
		if u.IsList() {
			list, err := u.ToList()
			if err != nil {
				return err
			}
			for i := range list.Items {
				if err := print(out, &list.Items[i]); err != nil {
					return err
				}
			}
			continue
		}
		if err := print(out, u); err != nil {
			return err
		}
	}
}

func print(out io.Writer, u *unstructured.Unstructured) error {
	result, err := status.Compute(u)
	if err != nil {
		return fmt.Errorf("%s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	_, err = fmt.Fprintf(out, "%s\t%s/%s\t%s\t%s\n", u.GetKind(), u.GetNamespace(), u.GetName(), result.Status, result.Message)
	return err
}
