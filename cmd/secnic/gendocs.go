package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// gendocsCommand writes man pages and shell completions generated from the
// CLI itself; make install runs it. Hidden: it is a build step.
func gendocsCommand(a *app) *cobra.Command {
	var man, bash, zsh, fish string
	c := &cobra.Command{
		Use:    "gendocs",
		Short:  "Write man pages and shell completions generated from the CLI (used by make install)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			root := cmd.Root()
			if man == "" && bash == "" && zsh == "" && fish == "" {
				return usagef("give --man DIR and/or --bash, --zsh, --fish FILE")
			}
			if man != "" {
				if err := os.MkdirAll(man, 0o755); err != nil {
					return err
				}
				// Reproducible pages: SOURCE_DATE_EPOCH, as Debian and
				// reproducible-builds.org ask, else today.
				date := time.Now()
				if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
					n, err := strconv.ParseInt(s, 10, 64)
					if err != nil {
						return fmt.Errorf("SOURCE_DATE_EPOCH %q is not a number of seconds", s)
					}
					date = time.Unix(n, 0).UTC()
				}
				hdr := &doc.GenManHeader{Title: "SECNIC", Section: "8", Source: versionString(), Manual: "secnic manual", Date: &date}
				if err := doc.GenManTree(root, hdr, man); err != nil {
					return fmt.Errorf("man pages: %w", err)
				}
			}
			for _, g := range []struct {
				path string
				gen  func(f *os.File) error
			}{
				{bash, func(f *os.File) error { return root.GenBashCompletionV2(f, true) }},
				{zsh, func(f *os.File) error { return root.GenZshCompletion(f) }},
				{fish, func(f *os.File) error { return root.GenFishCompletion(f, true) }},
			} {
				if g.path == "" {
					continue
				}
				if err := os.MkdirAll(filepath.Dir(g.path), 0o755); err != nil {
					return err
				}
				f, err := os.Create(g.path)
				if err != nil {
					return err
				}
				if err := g.gen(f); err != nil {
					f.Close()
					return fmt.Errorf("%s: %w", g.path, err)
				}
				if err := f.Close(); err != nil {
					return err
				}
			}
			fmt.Fprintln(a.errOut, "secnic: documentation written")
			return nil
		},
	}
	c.Flags().StringVar(&man, "man", "", "write section-8 man pages into this directory")
	c.Flags().StringVar(&bash, "bash", "", "write the bash completion to this file")
	c.Flags().StringVar(&zsh, "zsh", "", "write the zsh completion to this file")
	c.Flags().StringVar(&fish, "fish", "", "write the fish completion to this file")
	return c
}
