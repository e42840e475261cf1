package main

import (
	"encoding/json"
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/alize-eple/alize/controller/api"
)

// version is set at build time: -ldflags "-X main.version=1.2.0".
var version = "1.2.0"

// versionCommand prints the controller's version, the Go it was built with
// and the API version it serves.
func versionCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print alize-controller's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(map[string]string{"version": version, "go": runtime.Version(), "api": api.Version})
			}
			_, err := fmt.Fprintf(out, "alize-controller %s (%s, API %s)\n", version, runtime.Version(), api.Version)
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}
