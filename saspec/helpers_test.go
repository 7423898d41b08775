package saspec

// testKey returns n bytes of recognizable key material.
func testKey(n int, seed byte) Key {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i)
	}
	return KeyOf(b)
}

// gcmSpec is a valid inbound ESP AES-GCM-128 transport bundle.
func gcmSpec(name string, spi uint32, dst string) BundleSpec {
	return BundleSpec{
		Name: name, Dir: "in", Src: "192.0.2.1", Dst: dst,
		ESP: &SASpec{SPI: SPI(spi), Enc: "aes-gcm-128", EncKey: keyForSPI(20, spi)},
	}
}

// keyForSPI returns n bytes of key material unique to spi.
func keyForSPI(n int, spi uint32) Key {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(spi>>(8*(i%4))) ^ byte(i*7+1)
	}
	return KeyOf(b)
}
