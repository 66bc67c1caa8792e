package evalcore

import (
	"strconv"
	"strings"
)

// lookupCountry resolves an IP string the way SC does: a dotted quad of
// exactly four parts, each an i64 (sign allowed), combined with wrapping
// arithmetic. Where SC would crash (a number of 2^32 or more) there is no
// country; a negative number maps to the table's first range, as in SC.
func lookupCountry(cl CountryLookup, ip string) (string, bool) {
	if strings.Count(ip, ".") != 3 {
		return "", false
	}
	var n [4]int64
	rest := ip
	for i := 0; i < 4; i++ {
		part := rest
		if j := strings.IndexByte(rest, '.'); j >= 0 {
			part, rest = rest[:j], rest[j+1:]
		}
		v, err := strconv.ParseInt(part, 10, 64)
		if err != nil {
			return "", false
		}
		n[i] = v
	}
	num := n[0]*(1<<24) + n[1]<<16 + n[2]<<8 + n[3] // wraps like SC's release build
	if num >= 1<<32 {
		return "", false
	}
	if num < 0 {
		num = 0
	}
	cc, ok := cl.LookupNumericIp(uint64(num))
	if !ok || cc == "--" {
		return "", false
	}
	return cc, true
}
