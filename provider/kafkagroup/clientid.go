package kafkagroup

import "strings"

// ClientID is the client.id of a member's group client. The group reports
// it for each member (DescribeConsumerGroups): that is how a member's Owners learns
// another member's Address. Brokers take any string; '%', ';' and bytes
// outside printable ASCII are percent-encoded so that it splits back.
func ClientID(base, instance, address string) string {
	return escapeID(base) + ";instance=" + escapeID(instance) + ";address=" + escapeID(address)
}

// ParseClientID returns the address ClientID put in id.
func ParseClientID(id string) (address string, ok bool) {
	_, address, ok = splitClientID(id)
	return address, ok
}

// clientInstance returns the instance ClientID put in id.
func clientInstance(id string) (instance string, ok bool) {
	instance, _, ok = splitClientID(id)
	return instance, ok
}

func splitClientID(id string) (instance, address string, ok bool) {
	fields := strings.Split(id, ";")
	if len(fields) != 3 {
		return "", "", false
	}
	inst, ok1 := strings.CutPrefix(fields[1], "instance=")
	addr, ok2 := strings.CutPrefix(fields[2], "address=")
	if !ok1 || !ok2 {
		return "", "", false
	}
	if instance, ok = unescapeID(inst); !ok {
		return "", "", false
	}
	if address, ok = unescapeID(addr); !ok {
		return "", "", false
	}
	return instance, address, true
}

func escapeID(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' || c == ';' || c < 0x21 || c > 0x7e {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func unescapeID(s string) (string, bool) {
	unhex := func(c byte) (byte, bool) {
		switch {
		case '0' <= c && c <= '9':
			return c - '0', true
		case 'A' <= c && c <= 'F':
			return c - 'A' + 10, true
		}
		return 0, false
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", false
		}
		b.WriteByte(hi<<4 | lo)
		i += 2
	}
	return b.String(), true
}
