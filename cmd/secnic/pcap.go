package main

import (
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/secnic/secnic/pcaptool"
)

// pcapCommand is `secnic pcap encap|decap`: the offline packet tool. It
// needs no daemon.
func pcapCommand(a *app) *cobra.Command {
	c := &cobra.Command{
		Use:   "pcap",
		Short: "Apply SAs to a capture file offline (encap or decap)",
		Long: "pcap applies the SAs of a file to every packet of a capture, without a daemon:\n\n" +
			"  secnic pcap encap --sa sas.yaml plain.pcap esp.pcap\n" +
			"  secnic pcap decap --sa sas.yaml esp.pcap plain.pcap\n\n" +
			"The SA file uses the schema of the config file and the API (docs/config-schema.md): a\n" +
			"list of bundles, or an object with bundles (or sas) and policies. Captures may be raw IP\n" +
			"(link type 101), Ethernet (1) or Linux cooked (113); the output is raw IP, which\n" +
			"Wireshark reads. One line per packet shows the SPI, the sequence number and the verdict\n" +
			"with the drop reason; the exit status is 1 if any packet was dropped, unless --keep-going.\n\n" +
			"pcap is offline and explicit: it keeps no key-use ledger and no state. Encap starts at\n" +
			"sequence number 1 (or --seq) every time, so encapsulating twice with one AES-GCM, AES-GMAC,\n" +
			"AES-CTR or ChaCha20-Poly1305 key repeats nonces: that is for reproducing test vectors, not\n" +
			"for traffic anyone relies on. Choose --seq (and --iv) yourself.",
	}
	c.AddCommand(pcapOpCommand(a, pcaptool.Encap), pcapOpCommand(a, pcaptool.Decap))
	return c
}

func pcapOpCommand(a *app, op pcaptool.Op) *cobra.Command {
	var (
		saFile    string
		dir       string
		seq       string
		ivs       []string
		port      uint16
		keepGoing bool
	)
	c := &cobra.Command{
		Use:   op.String() + " --sa FILE IN.pcap OUT.pcap",
		Args:  cobra.ExactArgs(2),
		Short: map[pcaptool.Op]string{pcaptool.Encap: "Protect every packet with the outbound SAs", pcaptool.Decap: "Verify and decrypt every packet with the inbound SAs"}[op],
		RunE: func(cmd *cobra.Command, args []string) error {
			if saFile == "" {
				return usagef("--sa FILE is required")
			}
			opts := pcaptool.Options{Op: op, Dir: dir, EncapPort: port, KeepGoing: keepGoing, Log: a.out}
			if seq != "" {
				n, err := strconv.ParseUint(seq, 0, 64)
				if err != nil || n == 0 {
					return usagef("--seq %q: give a sequence number from 1 (decimal or 0x-hex)", seq)
				}
				opts.FirstSeq = n
			}
			for _, s := range ivs {
				for _, one := range strings.Split(s, ",") {
					iv, err := hex.DecodeString(strings.TrimPrefix(strings.ReplaceAll(one, " ", ""), "0x"))
					if err != nil {
						return usagef("--iv %q: not hex", one)
					}
					opts.IVs = append(opts.IVs, iv)
				}
			}
			if len(opts.IVs) > 0 && op != pcaptool.Encap {
				return usagef("--iv is for encap: decap reads the IV from each packet")
			}
			f, err := pcaptool.LoadFile(saFile)
			if err != nil {
				return err
			}
			defer func() {
				for i := range f.Bundles {
					f.Bundles[i].Wipe()
				}
			}()
			_, err = pcaptool.Run(f, args[0], args[1], opts)
			return err
		},
	}
	c.Flags().StringVar(&saFile, "sa", "", "SA file (YAML or JSON, the config/API schema)")
	c.Flags().StringVar(&dir, "dir", "", "use the file's in or out bundles (default: out for encap, in for decap; the other direction is turned around)")
	c.Flags().StringVar(&seq, "seq", "", "sequence number of the first packet (encap: first sent; decap: where the replay window starts)")
	c.Flags().StringSliceVar(&ivs, "iv", nil, "explicit IV per packet, in order (hex; repeat or comma-separate); for reproducing test vectors")
	c.Flags().Uint16Var(&port, "encap-port", 4500, "UDP port of RFC 3948 encapsulated ESP (decap)")
	c.Flags().BoolVar(&keepGoing, "keep-going", false, "exit 0 even if packets were dropped")
	return c
}
