package nic

import "github.com/prometheus/client_golang/prometheus"

// cryptoCollector exports a crypto-offload NIC's CryptoStats to
// Prometheus at scrape time.
type cryptoCollector struct {
	n      *NIC
	tx, rx *prometheus.Desc
}

func newCryptoCollector(n *NIC) *cryptoCollector {
	nic := prometheus.Labels{"nic": n.cfg.Name}
	return &cryptoCollector{
		n: n,
		tx: prometheus.NewDesc("secnic_crypto_tx_packets_total",
			"Crypto offload, transmit: messages from the host stack by outcome (protected, unprotected, unknown_handle, bad_message, failed, too_big; lso packets and the segments made of them).",
			[]string{"outcome"}, nic),
		rx: prometheus.NewDesc("secnic_crypto_rx_packets_total",
			"Crypto offload, receive: packets given to the host stack (delivered; of those crypto_done, failed, delete_req) or not (undelivered).",
			[]string{"outcome"}, nic),
	}
}

func (c *cryptoCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.tx; ch <- c.rx }

func (c *cryptoCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.n.CryptoStats()
	m := func(d *prometheus.Desc, v uint64, outcome string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), outcome)
	}
	m(c.tx, s.TxProtected, "protected")
	m(c.tx, s.TxUnprotected, "unprotected")
	m(c.tx, s.TxUnknownHandle, "unknown_handle")
	m(c.tx, s.TxBadMessage, "bad_message")
	m(c.tx, s.TxFailed, "failed")
	m(c.tx, s.TxTooBig, "too_big")
	m(c.tx, s.TxLSO, "lso")
	m(c.tx, s.TxSegments, "lso_segments")
	m(c.rx, s.RxDelivered, "delivered")
	m(c.rx, s.RxCryptoDone, "crypto_done")
	m(c.rx, s.RxFailed, "failed")
	m(c.rx, s.RxDeleteReq, "delete_req")
	m(c.rx, s.RxUndelivered, "undelivered")
}
