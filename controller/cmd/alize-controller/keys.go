package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/controller/internal/keys"
	"github.com/spf13/cobra"
)

func keysCommand(cl *client) *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "The academy's signing keys: ceremony, rotation, publication"}
	var dir string
	var expires time.Duration
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Make the root, release and director keys and the first root (offline)",
		Long: `Make, in --dir, the root, release and director keys (ed25519, PKCS#8 PEM,
mode 0600) and root-1.json, the first root of trust, signed by the root key.

Then move root.key and release.key OFFLINE (an encrypted USB key in a safe):
the controller needs only root-*.json and director.key in its keys directory.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := keys.Init(dir, time.Now().Add(expires))
			if err != nil {
				return err
			}
			r := t.Root()
			fmt.Fprintf(cl.stdout, "keys and root version 1 made in %s (root expires %s)\n", dir, r.Expires.Format(time.DateOnly))
			fmt.Fprintf(cl.stdout, "  root key      %s  → move offline\n", r.Roles.Root.KeyIDs[0][:16])
			fmt.Fprintf(cl.stdout, "  release key   %s  → move offline (signs module releases)\n", r.Roles.Release.KeyIDs[0][:16])
			fmt.Fprintf(cl.stdout, "  director key  %s  → stays with the controller (signs manifests)\n", r.Roles.Director.KeyIDs[0][:16])
			fmt.Fprintf(cl.stdout, "copy %s and %s to the controller's keys directory\n", keys.RootFile(1), keys.DirectorKeyFile)
			return nil
		},
	}
	initCmd.Flags().StringVar(&dir, "dir", "", "directory to make the keys in (required; not the controller's)")
	initCmd.Flags().DurationVar(&expires, "expires", 2*365*24*time.Hour, "lifetime of the root")
	initCmd.MarkFlagRequired("dir")

	var roles []string
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Make the next root version, with new keys for the roles named (offline)",
		Long: `Make the next root version in --dir, which holds the root chain and the
current root.key: the --role given get new keys (the old key files are kept as
<role>-v<N>.key), and the new root is signed by the old root key and the new one,
as agents walking the chain require. Then publish it: alize-controller keys
publish DIR/root-N.json (copy a new director.key to the controller first).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := keys.Rotate(dir, roles, time.Now().Add(expires))
			if err != nil {
				return err
			}
			fmt.Fprintf(cl.stdout, "root version %d made: %s (new keys for %s)\n", t.Version(), filepath.Join(dir, keys.RootFile(t.Version())), strings.Join(roles, ", "))
			return nil
		},
	}
	rotate.Flags().StringVar(&dir, "dir", "", "directory holding the root chain and root.key (required)")
	rotate.Flags().StringSliceVar(&roles, "role", []string{"root"}, "roles that get new keys: root, release, director")
	rotate.Flags().DurationVar(&expires, "expires", 2*365*24*time.Hour, "lifetime of the new root")
	rotate.MarkFlagRequired("dir")

	publish := &cobra.Command{
		Use:   "publish ROOT.json",
		Short: "Publish the next root version to the controller",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			env, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			var info api.RootInfo
			if err := cl.do(cmd.Context(), "POST", api.PathAdminRoots, api.RootRequest{Envelope: json.RawMessage(env)}, &info); err != nil {
				return err
			}
			return cl.print(info, func(w ioWriter) {
				fmt.Fprintf(w, "root version %d published (expires %s)\n", info.Version, info.Expires.Format(time.DateOnly))
			})
		},
	}
	cmd.AddCommand(initCmd, rotate, publish)
	return cmd
}
