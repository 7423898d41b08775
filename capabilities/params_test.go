package capabilities

import "testing"

func TestSetOffloadParameters(t *testing.T) {
	type state struct{ ah, esp, combined bool }
	tests := []struct {
		name        string
		config      Config
		start       IPsecV2Setting // applied first (NO_CHANGE: keep the default)
		params      OffloadParameters
		wantChanged bool
		want        state
		wantErr     error
		wantText    string
	}{
		// Every value on an IPv6 adapter starting from the default AH+ESP.
		{name: "no change", params: OffloadParameters{IPsecV2: IPsecV2NoChange},
			want: state{true, true, true}},
		{name: "disabled", params: OffloadParameters{IPsecV2: IPsecV2Disabled},
			wantChanged: true, want: state{false, false, false}},
		{name: "ah", params: OffloadParameters{IPsecV2: IPsecV2AHEnabled},
			wantChanged: true, want: state{true, false, false}},
		{name: "esp", params: OffloadParameters{IPsecV2: IPsecV2ESPEnabled},
			wantChanged: true, want: state{false, true, false}},
		{name: "ah and esp already on", params: OffloadParameters{IPsecV2: IPsecV2AHAndESPEnabled},
			want: state{true, true, true}},
		{name: "ah and esp from disabled", start: IPsecV2Disabled, params: OffloadParameters{IPsecV2: IPsecV2AHAndESPEnabled},
			wantChanged: true, want: state{true, true, true}},
		{name: "esp from esp", start: IPsecV2ESPEnabled, params: OffloadParameters{IPsecV2: IPsecV2ESPEnabled},
			want: state{false, true, false}},
		{name: "disabled twice", start: IPsecV2Disabled, params: OffloadParameters{IPsecV2: IPsecV2Disabled},
			want: state{false, false, false}},
		{name: "invalid 5", params: OffloadParameters{IPsecV2: 5},
			want: state{true, true, true}, wantErr: ErrInvalid, wantText: "IPsecV2 = 5 is invalid"},
		{name: "invalid 255", params: OffloadParameters{IPsecV2: 255},
			want: state{true, true, true}, wantErr: ErrInvalid, wantText: "valid values: 0 NO_CHANGE"},
		{name: "invalid IPv4 member", params: OffloadParameters{IPsecV2: IPsecV2Disabled, IPsecV2IPv4: 9},
			want: state{true, true, true}, wantErr: ErrInvalid, wantText: "IPsecV2IPv4 = 9 is invalid"},

		// IPsecV2IPv4 on an IPv6 adapter.
		{name: "ipv6 adapter, IPv4 member equal", params: OffloadParameters{IPsecV2: IPsecV2ESPEnabled, IPsecV2IPv4: IPsecV2ESPEnabled},
			wantChanged: true, want: state{false, true, false}},
		{name: "ipv6 adapter, IPv4 member conflicts", params: OffloadParameters{IPsecV2: IPsecV2ESPEnabled, IPsecV2IPv4: IPsecV2Disabled},
			want: state{true, true, true}, wantErr: ErrInvalid, wantText: "leave IPsecV2IPv4 at NO_CHANGE"},
		{name: "ipv6 adapter, IPv4 member alone", params: OffloadParameters{IPsecV2IPv4: IPsecV2Disabled},
			want: state{true, true, true}, wantErr: ErrInvalid, wantText: "conflicts with IPsecV2 = NO_CHANGE"},

		// IPv4-only adapter.
		{name: "ipv4 adapter, IPv4 member", config: Config{Hardware: Overrides{IPv6Supported: ptr(false)}},
			params: OffloadParameters{IPsecV2IPv4: IPsecV2AHEnabled}, wantChanged: true, want: state{true, false, false}},
		{name: "ipv4 adapter, IPsecV2 member", config: Config{Hardware: Overrides{IPv6Supported: ptr(false)}},
			params: OffloadParameters{IPsecV2: IPsecV2Disabled}, wantChanged: true, want: state{false, false, false}},
		{name: "ipv4 adapter, both equal", config: Config{Hardware: Overrides{IPv6Supported: ptr(false)}},
			params: OffloadParameters{IPsecV2: IPsecV2ESPEnabled, IPsecV2IPv4: IPsecV2ESPEnabled}, wantChanged: true, want: state{false, true, false}},
		{name: "ipv4 adapter, both conflict", config: Config{Hardware: Overrides{IPv6Supported: ptr(false)}},
			params: OffloadParameters{IPsecV2: IPsecV2ESPEnabled, IPsecV2IPv4: IPsecV2AHEnabled},
			want:   state{true, true, true}, wantErr: ErrInvalid, wantText: "IPv4 only"},

		// Hardware limits.
		{name: "ixgbe ah refused", config: Config{Profile: ProfileIxgbe}, params: OffloadParameters{IPsecV2: IPsecV2AHEnabled},
			want: state{false, true, false}, wantErr: ErrNotSupported, wantText: "AH offload"},
		{name: "ixgbe ah+esp refused", config: Config{Profile: ProfileIxgbe}, params: OffloadParameters{IPsecV2: IPsecV2AHAndESPEnabled},
			want: state{false, true, false}, wantErr: ErrNotSupported, wantText: `profile "ixgbe"`},
		{name: "ixgbe disable", config: Config{Profile: ProfileIxgbe}, params: OffloadParameters{IPsecV2: IPsecV2Disabled},
			wantChanged: true, want: state{false, false, false}},
		{name: "no combined in hardware", config: Config{Hardware: Overrides{AhEspCombined: ptr(false)}},
			start: IPsecV2Disabled, params: OffloadParameters{IPsecV2: IPsecV2AHAndESPEnabled},
			wantChanged: true, want: state{true, true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustManager(t, tt.config)
			if tt.start != IPsecV2NoChange {
				if _, err := m.SetOffloadParameters(OffloadParameters{IPsecV2: tt.start, IPsecV2IPv4: tt.start}); err != nil {
					t.Fatalf("start: %v", err)
				}
			}
			before := m.Current()
			sub := m.Subscribe(4)
			defer sub.Unsubscribe()

			changed, err := m.SetOffloadParameters(tt.params)
			checkErr(t, err, tt.wantErr, tt.wantText)
			if changed != tt.wantChanged {
				t.Errorf("changed = %v, want %v", changed, tt.wantChanged)
			}
			cur := m.Current()
			if got := (state{cur.Ah, cur.Esp, cur.AhEspCombined}); got != tt.want {
				t.Errorf("state = %+v, want %+v", got, tt.want)
			}
			inds := drain(sub)
			switch {
			case tt.wantChanged && len(inds) != 1:
				t.Fatalf("got %d indications, want 1", len(inds))
			case tt.wantChanged:
				if inds[0].Status != StatusTaskOffloadCurrentConfig || inds[0].Record != cur {
					t.Errorf("indication = %+v, want current config %+v", inds[0], cur)
				}
			case len(inds) != 0:
				t.Errorf("got %d indications for no change", len(inds))
			}
			if !tt.wantChanged && cur != before {
				t.Errorf("configuration changed without report:\n got %+v\nwant %+v", cur, before)
			}
			if got := m.Setting(); got != SettingFor(tt.want.ah, tt.want.esp) {
				t.Errorf("Setting() = %v", got)
			}
		})
	}
}

func TestKeywords(t *testing.T) {
	tests := []struct {
		keyword int
		setting IPsecV2Setting
		wantErr bool
	}{
		{-1, 0, true},
		{0, IPsecV2Disabled, false},
		{1, IPsecV2AHEnabled, false},
		{2, IPsecV2ESPEnabled, false},
		{3, IPsecV2AHAndESPEnabled, false},
		{4, 0, true},
	}
	for _, tt := range tests {
		s, err := SettingFromKeyword(tt.keyword)
		if tt.wantErr {
			checkErr(t, err, ErrInvalid, "*IPsecOffloadV2", "0 disabled, 1 AH, 2 ESP, 3 AH and ESP")
			continue
		}
		checkErr(t, err, nil)
		if s != tt.setting {
			t.Errorf("SettingFromKeyword(%d) = %v, want %v", tt.keyword, s, tt.setting)
		}
		k, err := KeywordFromSetting(s)
		if err != nil || k != tt.keyword {
			t.Errorf("KeywordFromSetting(%v) = %d, %v; want %d", s, k, err, tt.keyword)
		}
	}
	for _, s := range []IPsecV2Setting{IPsecV2NoChange, 5} {
		_, err := KeywordFromSetting(s)
		checkErr(t, err, ErrInvalid, "no registry keyword value")
	}
	if KeywordDefault != 3 {
		t.Errorf("KeywordDefault = %d, want 3", KeywordDefault)
	}
}

func TestParseIPsecV2Setting(t *testing.T) {
	tests := []struct {
		in      string
		want    IPsecV2Setting
		wantErr bool
	}{
		{"0", IPsecV2NoChange, false},
		{"4", IPsecV2AHAndESPEnabled, false},
		{"5", 0, true},
		{"ESP_ENABLED", IPsecV2ESPEnabled, false},
		{"NDIS_OFFLOAD_PARAMETERS_IPSECV2_AH_ENABLED", IPsecV2AHEnabled, false},
		{"NDIS_OFFLOAD_PARAMETERS_NO_CHANGE", IPsecV2NoChange, false},
		{"off", IPsecV2Disabled, false},
		{"ah+esp", IPsecV2AHAndESPEnabled, false},
		{" esp ", IPsecV2ESPEnabled, false},
		{"gre", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseIPsecV2Setting(tt.in)
		if tt.wantErr {
			checkErr(t, err, ErrInvalid, "valid values")
			continue
		}
		checkErr(t, err, nil)
		if got != tt.want {
			t.Errorf("ParseIPsecV2Setting(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
	if got := IPsecV2Setting(7).String(); got != "IPsecV2Setting(7)" {
		t.Errorf("String() of invalid = %q", got)
	}
	if got := IPsecV2AHAndESPEnabled.String(); got != "AH_AND_ESP_ENABLED" {
		t.Errorf("String() = %q", got)
	}
}
