package version

// Gate is a feature that changes a data format or a command. It switches on
// when the cluster's active version reaches Since, which happens only when an
// upgrade is finalized: until then the old binary can still read everything,
// so a rollback stays safe.
type Gate struct {
	// Name identifies the gate in code, status and plans.
	Name string
	// Since is the first active version with the feature on.
	Since string
	// Description says what changes when the gate opens.
	Description string
}

// Gates lists every version gate, oldest first. A gate is never removed while
// a supported binary could still run an active version below its Since.
var Gates = []Gate{
	{Name: "batch-crc32c", Since: "0.2.0", Description: "every new record batch carries a CRC-32C of its records, verified on read"},
}

// Enabled reports whether the gate called name is on for the active version:
// active >= Since in SemVer order, so a pre-release of Since is still below
// it. It is false for an unknown name and for an empty or unparsable active
// version, so a feature never switches on by mistake.
func Enabled(name, active string) bool {
	for _, g := range Gates {
		if g.Name == name {
			return open(g, active)
		}
	}
	return false
}

// EnabledGates returns the names of the gates that are on for the active
// version, in the order of Gates; empty, not nil, when none is.
func EnabledGates(active string) []string {
	names := []string{}
	for _, g := range Gates {
		if open(g, active) {
			names = append(names, g.Name)
		}
	}
	return names
}

// open reports whether g is on at active; false when either does not parse.
func open(g Gate, active string) bool {
	a, err := parse("active version", active)
	if err != nil {
		return false
	}
	since, err := parse("gate "+g.Name, g.Since)
	if err != nil {
		return false
	}
	return !a.LessThan(since)
}
