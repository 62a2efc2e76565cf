//go:build tools

// The client tools the tests, the demo and users run (hack/tools.sh builds them).
package tools

import (
	_ "helm.sh/helm/v4/cmd/helm"
)
