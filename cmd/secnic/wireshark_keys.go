package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/secnic/secnic/nic"
)

func wiresharkKeysCommand(a *app) *cobra.Command {
	var (
		out    string
		format string
	)
	c := &cobra.Command{
		Use:   "wireshark-keys",
		Short: "Write Wireshark's ESP SA table (esp_sa) for the live SAs, keys included",
		Long: "wireshark-keys asks the daemon for its ESP SAs with their keys (the API's explicit keys\n" +
			"option) and writes them as Wireshark's ESP SA table, so that a wire capture\n" +
			"(capture.wire in the configuration) can be decrypted:\n\n" +
			"  secnic wireshark-keys --out ~/.config/wireshark/esp_sa     (the UAT file of the default profile)\n" +
			"  eval tshark -r wire.pcap -o esp.enable_encryption_decode:TRUE \\\n" +
			"       \"$(secnic wireshark-keys --format tshark)\"\n\n" +
			"The output holds secret keys: --out files are created with mode 0600. SAs Wireshark\n" +
			"cannot decrypt (ChaCha20-Poly1305, ESP AES-GMAC) are written as comments.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "uat" && format != "tshark" {
				return usagef("--format %q: use uat or tshark", format)
			}
			resp, err := a.client().ListSAs(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer func() {
				for i := range resp.Bundles {
					resp.Bundles[i].Spec.Wipe()
				}
			}()
			var buf bytes.Buffer
			if err := nic.WriteWiresharkESPSA(&buf, resp.Bundles); err != nil {
				return err
			}
			defer clear(buf.Bytes())
			data := buf.Bytes()
			if format == "tshark" {
				data = tsharkOptions(data)
				defer clear(data)
			}
			if out == "" || out == "-" {
				_, err := a.out.Write(data)
				return err
			}
			if err := writeSecret(out, data); err != nil {
				return err
			}
			fmt.Fprintf(a.errOut, "wrote %d ESP SA record(s) to %s (secret: mode 0600)\n", countRecords(buf.Bytes()), out)
			return nil
		},
	}
	c.Flags().StringVarP(&out, "out", "o", "", "write to this file (mode 0600) instead of standard output")
	c.Flags().StringVar(&format, "format", "uat", "uat (the esp_sa file) or tshark (-o options for tshark's command line)")
	return c
}

// writeSecret writes data to path, readable by its owner only.
func writeSecret(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	if err := f.Chmod(0o600); err != nil { // an existing file keeps its mode otherwise
		f.Close()
		return fmt.Errorf("cannot restrict %s to its owner: %w", path, err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	return nil
}

// tsharkOptions turns esp_sa records into tshark -o arguments on one
// line, quoted for a POSIX shell (use with eval); comment lines are
// dropped.
func tsharkOptions(uat []byte) []byte {
	var b bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(uat))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "-o 'uat:esp_sa:%s'", line)
	}
	b.WriteByte('\n')
	return b.Bytes()
}

func countRecords(uat []byte) int {
	n := 0
	for _, line := range strings.Split(string(uat), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			n++
		}
	}
	return n
}
