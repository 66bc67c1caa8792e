package evalcore

// UnitIDs yields the user's unit IDs as evaluation sees them (their string
// views): userID first, then the customIDs in key order. It lets a caller key
// per-user state (such as exposure de-duplication) without decoding the user
// again; use it as `for idType, id := range u.UnitIDs`.
func (u *User) UnitIDs(yield func(idType, id string) bool) {
	if !yield("userID", u.UserID()) {
		return
	}
	for _, k := range u.customIDKeys {
		id, _ := u.CustomID(k)
		if !yield(k, id) {
			return
		}
	}
}
