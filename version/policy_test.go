package version

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// checkRefusal asserts that err is nil when want is nil, and otherwise a
// *Refusal of kind want with a Message and Hint containing the given parts.
func checkRefusal(t *testing.T, err, want error, msg, hint []string) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("got error %v (hint %q), want nil", err, hintOf(err))
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("got error %v, want kind %v", err, want)
	}
	var r *Refusal
	if !errors.As(err, &r) {
		t.Fatalf("got %T, want *Refusal", err)
	}
	if r.Message == "" || r.Hint == "" {
		t.Fatalf("refusal needs a message and a hint: %+v", r)
	}
	if err.Error() != r.Message {
		t.Errorf("Error() = %q, want the message %q", err.Error(), r.Message)
	}
	for _, s := range msg {
		if !strings.Contains(r.Message, s) {
			t.Errorf("message %q does not contain %q", r.Message, s)
		}
	}
	for _, s := range hint {
		if !strings.Contains(r.Hint, s) {
			t.Errorf("hint %q does not contain %q", r.Hint, s)
		}
	}
}

func hintOf(err error) string {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Hint
	}
	return ""
}

func TestRefusal_ErrorsIsAndAs(t *testing.T) {
	err := CheckUpgrade("0.2.0", "0.1.0", "", true)
	wrapped := fmt.Errorf("cluster upgrade: %w", err)
	if !errors.Is(wrapped, ErrDowngrade) {
		t.Fatalf("errors.Is(%v, ErrDowngrade) = false", wrapped)
	}
	for _, other := range []error{ErrInvalid, ErrBinaryTooOld, ErrOutsideWindow, ErrNotNewer, ErrSkipsWindow, ErrNodeBinary} {
		if errors.Is(wrapped, other) {
			t.Errorf("errors.Is(%v, %v) = true", wrapped, other)
		}
	}
	var r *Refusal
	if !errors.As(wrapped, &r) || r.Kind != ErrDowngrade || r.Error() != r.Message {
		t.Fatalf("errors.As gave %+v", r)
	}
}

func TestValid(t *testing.T) {
	tests := []struct {
		v    string
		ok   bool
		hint string
	}{
		{"0.1.0", true, ""},
		{"0.2.0-rc.1", true, ""},
		{"1.2.3+build.7", true, ""},
		{"1.2.3-beta.2+sha.abc", true, ""},
		{"10.20.30", true, ""},
		{"", false, "MAJOR.MINOR.PATCH"},
		{"abc", false, "MAJOR.MINOR.PATCH"},
		{"0.2", false, "MAJOR.MINOR.PATCH"},
		{"1", false, "MAJOR.MINOR.PATCH"},
		{"1.2.3.4", false, "MAJOR.MINOR.PATCH"},
		{"01.2.3", false, "MAJOR.MINOR.PATCH"},
		{"1.2.3-", false, "MAJOR.MINOR.PATCH"},
		{" 1.2.3", false, "MAJOR.MINOR.PATCH"},
		{"v0.2.0", false, `drop the leading "v": 0.2.0`},
		{"99999999999999999999.0.0", false, "MAJOR.MINOR.PATCH"},
	}
	for _, tt := range tests {
		t.Run(tt.v, func(t *testing.T) {
			err := Valid(tt.v)
			if tt.ok {
				checkRefusal(t, err, nil, nil, nil)
				return
			}
			checkRefusal(t, err, ErrInvalid, []string{"version"}, []string{tt.hint})
		})
	}
}

func TestLess(t *testing.T) {
	tests := []struct {
		a, b    string
		want    bool
		invalid bool
	}{
		{a: "0.1.0", b: "0.2.0", want: true},
		{a: "0.2.0", b: "0.1.0", want: false},
		{a: "0.2.0", b: "0.2.0", want: false},
		{a: "0.2.0", b: "0.10.0", want: true}, // numeric, not lexical
		{a: "0.9.9", b: "1.0.0", want: true},
		{a: "0.2.0-rc.1", b: "0.2.0", want: true},
		{a: "0.2.0-rc.1", b: "0.2.0-rc.2", want: true},
		{a: "0.2.0-rc.2", b: "0.2.0-rc.10", want: true},
		{a: "0.2.0+build.1", b: "0.2.0", want: false}, // build metadata ignored
		{a: "0.2.0", b: "0.2.0+build.1", want: false},
		{a: "x", b: "0.2.0", invalid: true},
		{a: "0.2.0", b: "", invalid: true},
	}
	for _, tt := range tests {
		t.Run(tt.a+"<"+tt.b, func(t *testing.T) {
			got, err := Less(tt.a, tt.b)
			if tt.invalid {
				checkRefusal(t, err, ErrInvalid, nil, nil)
				return
			}
			checkRefusal(t, err, nil, nil, nil)
			if got != tt.want {
				t.Errorf("Less(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
		})
	}
}

func TestWindowFor(t *testing.T) {
	tests := []struct {
		name, binary, min string
		want              string
		msg               []string
	}{
		{name: "0.0.x starts at 0.0.0", binary: "0.0.5", want: "0.0.0"},
		{name: "0.1.0", binary: "0.1.0", want: "0.0.0"},
		{name: "0.1 patch", binary: "0.1.7", want: "0.0.0"},
		{name: "0.2.0", binary: "0.2.0", want: "0.1.0"},
		{name: "0.2 patch", binary: "0.2.3", want: "0.1.0"},
		{name: "pre-release stripped", binary: "0.2.0-rc.1", want: "0.1.0"},
		{name: "build stripped", binary: "0.10.0+build.5", want: "0.9.0"},
		{name: "1.0.0 starts at 1.0.0", binary: "1.0.0", want: "1.0.0"},
		{name: "1.0 patch", binary: "1.0.4", want: "1.0.0"},
		{name: "1.1.0", binary: "1.1.0", want: "1.0.0"},
		{name: "1.5.2", binary: "1.5.2", want: "1.4.0"},
		{name: "2.0.0-rc.1", binary: "2.0.0-rc.1", want: "2.0.0"},
		{name: "MinCompatible widens across a major", binary: "1.0.0", min: "0.9.0", want: "0.9.0"},
		{name: "MinCompatible narrows", binary: "1.5.0", min: "1.5.0", want: "1.5.0"},
		{name: "MinCompatible with a patch", binary: "1.5.0", min: "1.4.2", want: "1.4.2"},
		{name: "invalid binary", binary: "abc", msg: []string{`"abc"`}},
		{name: "empty binary", binary: "", msg: []string{"empty"}},
		{name: "two-part binary", binary: "0.2", msg: []string{`"0.2"`}},
		{name: "invalid MinCompatible", binary: "1.0.0", min: "0.9", msg: []string{"MinCompatible", `"0.9"`}},
		{name: "MinCompatible newer than binary", binary: "0.2.0", min: "0.3.0", msg: []string{"MinCompatible 0.3.0", "0.2.0"}},
		{name: "MinCompatible above a pre-release binary", binary: "0.2.0-rc.1", min: "0.2.0", msg: []string{"0.2.0-rc.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := WindowFor(tt.binary, tt.min)
			if tt.want == "" {
				checkRefusal(t, err, ErrInvalid, tt.msg, nil)
				return
			}
			checkRefusal(t, err, nil, nil, nil)
			if got.String() != tt.want {
				t.Errorf("WindowFor(%q, %q) = %s, want %s", tt.binary, tt.min, got, tt.want)
			}
		})
	}
}

func TestBinaryAndWindow_FollowBuildVars(t *testing.T) {
	if got := Binary().String(); got != Version {
		t.Errorf("Binary() = %s, want %s", got, Version)
	}
	want, err := WindowFor(Version, MinCompatible)
	if err != nil {
		t.Fatal(err)
	}
	if got := Window(); !got.Equal(want) {
		t.Errorf("Window() = %s, want %s", got, want)
	}
	if Binary() == Binary() || Window() == Window() {
		t.Error("Binary and Window must return copies")
	}
}

func TestMustBuild(t *testing.T) {
	tests := []struct {
		name, version, min string
		bin, win           string
		panics             []string
	}{
		{name: "default window", version: "0.2.0", bin: "0.2.0", win: "0.1.0"},
		{name: "MinCompatible", version: "1.0.0", min: "0.9.0", bin: "1.0.0", win: "0.9.0"},
		{name: "Version not semver", version: "dev", panics: []string{`"dev"`, "version.Version=MAJOR.MINOR.PATCH"}},
		{name: "Version empty", version: "", panics: []string{"empty"}},
		{name: "MinCompatible not semver", version: "1.0.0", min: "0.9", panics: []string{`"0.9"`, "version.MinCompatible"}},
		{name: "MinCompatible newer", version: "1.0.0", min: "1.1.0", panics: []string{"1.1.0", "version.MinCompatible"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if tt.panics == nil {
					if r != nil {
						t.Fatalf("unexpected panic: %v", r)
					}
					return
				}
				msg, ok := r.(string)
				if !ok {
					t.Fatalf("got panic %v, want a message", r)
				}
				for _, s := range tt.panics {
					if !strings.Contains(msg, s) {
						t.Errorf("panic %q does not contain %q", msg, s)
					}
				}
			}()
			bin, win := mustBuild(tt.version, tt.min)
			if tt.panics != nil {
				t.Fatalf("mustBuild(%q, %q) did not panic", tt.version, tt.min)
			}
			if bin.String() != tt.bin || win.String() != tt.win {
				t.Errorf("mustBuild(%q, %q) = %s, %s; want %s, %s", tt.version, tt.min, bin, win, tt.bin, tt.win)
			}
		})
	}
}

func TestCanRun(t *testing.T) {
	tests := []struct {
		name             string
		bin, min, active string
		want             error
		msg, hint        []string
	}{
		{name: "new cluster", bin: "0.2.0", active: ""},
		{name: "new cluster, 1.x", bin: "1.3.0", active: ""},
		{name: "same version", bin: "0.2.0", active: "0.2.0"},
		{name: "newer patch", bin: "0.2.1", active: "0.2.0"},
		{name: "next minor", bin: "0.3.0", active: "0.2.5"},
		{name: "0.1 on 0.0", bin: "0.1.0", active: "0.0.3"},
		{name: "1.x next minor", bin: "1.2.0", active: "1.1.4"},
		{name: "1.0 on 1.0", bin: "1.0.2", active: "1.0.0"},
		{name: "release on its pre-release", bin: "0.2.0", active: "0.2.0-rc.1"},
		{name: "MinCompatible across a major", bin: "1.0.0", min: "0.9.0", active: "0.9.3"},
		{
			name: "binary older than active", bin: "0.1.0", active: "0.2.0", want: ErrBinaryTooOld,
			msg:  []string{"binary 0.1.0 is older than the cluster's active version 0.2.0"},
			hint: []string{"install weir 0.2.0 or newer", "weir cluster restore", "backup taken before the upgrade"},
		},
		{name: "older patch", bin: "0.2.0", active: "0.2.1", want: ErrBinaryTooOld, msg: []string{"0.2.0", "0.2.1"}, hint: []string{"install weir 0.2.1 or newer"}},
		{name: "older major", bin: "0.9.0", active: "1.0.0", want: ErrBinaryTooOld, hint: []string{"install weir 1.0.0 or newer"}},
		{name: "pre-release on its release", bin: "0.2.0-rc.1", active: "0.2.0", want: ErrBinaryTooOld},
		{
			name: "active two minors back", bin: "0.3.0", active: "0.1.0", want: ErrOutsideWindow,
			msg:  []string{"active version 0.1.0 is older than 0.2.0", "weir 0.3.0"},
			hint: []string{"upgrade the cluster to 0.2.x first", "weir cluster upgrade", "then install weir 0.3.0"},
		},
		{name: "active four minors back", bin: "0.5.0", active: "0.1.0", want: ErrOutsideWindow, hint: []string{"to 0.2.x first"}},
		{name: "1.x two minors back", bin: "1.2.0", active: "1.0.0", want: ErrOutsideWindow, hint: []string{"to 1.1.x first"}},
		{name: "major without MinCompatible", bin: "1.0.0", active: "0.9.0", want: ErrOutsideWindow, hint: []string{"the last 0.x release and then to 1.0.x first"}},
		{name: "below MinCompatible", bin: "1.0.0", min: "0.9.0", active: "0.8.0", want: ErrOutsideWindow, msg: []string{"older than 0.9.0"}, hint: []string{"to 0.9.x first"}},
		{name: "below a MinCompatible patch", bin: "1.5.0", min: "1.4.2", active: "1.4.1", want: ErrOutsideWindow, hint: []string{"to 1.4.2 or a newer 1.4.x first"}},
		{name: "narrowed by MinCompatible", bin: "1.5.0", min: "1.5.0", active: "1.4.0", want: ErrOutsideWindow},
		{name: "invalid binary", bin: "dev", active: "0.1.0", want: ErrInvalid, msg: []string{`"dev"`}},
		{name: "invalid binary, new cluster", bin: "dev", active: "", want: ErrInvalid},
		{name: "invalid active", bin: "0.2.0", active: "0.2", want: ErrInvalid, msg: []string{"active version", `"0.2"`}},
		{name: "invalid MinCompatible", bin: "1.0.0", min: "x", active: "0.9.0", want: ErrInvalid},
		{name: "MinCompatible newer than binary", bin: "1.0.0", min: "1.1.0", active: "1.0.0", want: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkRefusal(t, CanRun(tt.bin, tt.min, tt.active), tt.want, tt.msg, tt.hint)
		})
	}
}

func TestCheckUpgrade(t *testing.T) {
	tests := []struct {
		name                string
		active, target, min string
		force               bool
		want                error
		msg, hint           []string
	}{
		{name: "next minor", active: "0.1.0", target: "0.2.0"},
		{name: "patch", active: "0.1.0", target: "0.1.1"},
		{name: "next minor with patch", active: "0.2.3", target: "0.3.1"},
		{name: "1.x next minor", active: "1.0.0", target: "1.1.0"},
		{name: "1.x patch", active: "1.1.3", target: "1.1.4"},
		{name: "release from its pre-release", active: "0.2.0-rc.1", target: "0.2.0"},
		{name: "major with MinCompatible", active: "0.9.0", target: "1.0.0", min: "0.9.0"},
		{name: "force on a valid upgrade", active: "0.1.0", target: "0.2.0", force: true},

		{
			name: "0.x skips a minor", active: "0.1.0", target: "0.3.0", want: ErrSkipsWindow,
			msg:  []string{"from 0.1.0 to 0.3.0", "0.2.0"},
			hint: []string{"upgrade the cluster to 0.2.x first", "weir cluster upgrade", "then upgrade to 0.3.0"},
		},
		{name: "0.x skip with force", active: "0.1.0", target: "0.3.0", force: true, want: ErrSkipsWindow, hint: []string{"0.2.x"}},
		{name: "0.x skips three minors", active: "0.1.4", target: "0.5.0", want: ErrSkipsWindow, hint: []string{"to 0.2.x first"}},
		{name: "0.x skip to a pre-release", active: "0.1.0", target: "0.3.0-rc.1", force: true, want: ErrSkipsWindow, hint: []string{"0.2.x"}},
		{name: "1.x skips a minor", active: "1.0.0", target: "1.2.0", want: ErrSkipsWindow, hint: []string{"to 1.1.x first"}},
		{name: "major without MinCompatible", active: "0.9.0", target: "1.0.0", want: ErrSkipsWindow, hint: []string{"the last 0.x release and then to 1.0.x first"}},
		{name: "below MinCompatible", active: "0.8.0", target: "1.0.0", min: "0.9.0", want: ErrSkipsWindow, hint: []string{"to 0.9.x first"}},
		{name: "narrowed by MinCompatible", active: "1.4.0", target: "1.5.0", min: "1.5.0", want: ErrSkipsWindow},

		{
			name: "equal", active: "0.2.0", target: "0.2.0", want: ErrNotNewer,
			msg:  []string{"already 0.2.0"},
			hint: []string{"--force"},
		},
		{name: "equal with force", active: "0.2.0", target: "0.2.0", force: true},
		{name: "equal but for build metadata", active: "0.2.0", target: "0.2.0+build.7", want: ErrNotNewer},
		{
			name: "pre-release", active: "0.1.0", target: "0.2.0-rc.1", want: ErrNotNewer,
			msg:  []string{"0.2.0-rc.1 is a pre-release"},
			hint: []string{"--force", "0.2.0"},
		},
		{name: "pre-release with force", active: "0.1.0", target: "0.2.0-rc.1", force: true},
		{name: "pre-release to the next", active: "0.2.0-rc.1", target: "0.2.0-rc.2", want: ErrNotNewer},
		{name: "pre-release to the next with force", active: "0.2.0-rc.1", target: "0.2.0-rc.2", force: true},

		{
			name: "downgrade", active: "0.2.0", target: "0.1.0", want: ErrDowngrade,
			msg:  []string{"0.1.0 is older than the cluster's active version 0.2.0"},
			hint: []string{"weir cluster restore", "backup taken before the upgrade"},
		},
		{name: "downgrade with force", active: "0.2.0", target: "0.1.0", force: true, want: ErrDowngrade},
		{name: "patch downgrade with force", active: "0.2.1", target: "0.2.0", force: true, want: ErrDowngrade},
		{name: "downgrade to own pre-release with force", active: "0.2.0", target: "0.2.0-rc.1", force: true, want: ErrDowngrade},
		{name: "major downgrade with force", active: "1.0.0", target: "0.9.0", min: "0.8.0", force: true, want: ErrDowngrade},

		{name: "unparsable target", active: "0.1.0", target: "latest", want: ErrInvalid, msg: []string{"upgrade target", `"latest"`}},
		{name: "unparsable target with force", active: "0.1.0", target: "latest", force: true, want: ErrInvalid},
		{name: "empty target", active: "0.1.0", target: "", want: ErrInvalid, msg: []string{"empty"}},
		{name: "v-prefixed target", active: "0.1.0", target: "v0.2.0", want: ErrInvalid, hint: []string{`drop the leading "v": 0.2.0`}},
		{name: "two-part target", active: "0.1.0", target: "0.2", want: ErrInvalid},
		{name: "unparsable active", active: "garbage", target: "0.2.0", want: ErrInvalid, msg: []string{"active version"}},
		{name: "empty active", active: "", target: "0.2.0", want: ErrInvalid},
		{name: "unparsable MinCompatible", active: "0.9.0", target: "1.0.0", min: "0.9", want: ErrInvalid, msg: []string{"MinCompatible"}},
		{name: "MinCompatible newer than target", active: "0.9.0", target: "1.0.0", min: "1.1.0", want: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkRefusal(t, CheckUpgrade(tt.active, tt.target, tt.min, tt.force), tt.want, tt.msg, tt.hint)
		})
	}
}

func TestCheckNode(t *testing.T) {
	tests := []struct {
		name                         string
		id, bin, min, active, target string
		want                         error
		msg, hint                    []string
	}{
		{name: "binary is the target", id: "n1", bin: "0.2.0", active: "0.1.0", target: "0.2.0"},
		{name: "binary newer patch", id: "n1", bin: "0.2.1", active: "0.1.0", target: "0.2.0"},
		{name: "1.x", id: "n1", bin: "1.2.0", active: "1.1.0", target: "1.2.0"},
		{name: "pre-release target", id: "n1", bin: "0.2.0-rc.1", active: "0.1.0", target: "0.2.0-rc.1"},
		{name: "major with MinCompatible", id: "n1", bin: "1.0.0", min: "0.9.0", active: "0.9.1", target: "1.0.0"},
		{
			name: "binary older than target", id: "n2", bin: "0.1.0", active: "0.1.0", target: "0.2.0", want: ErrNodeBinary,
			msg:  []string{"node n2", "0.1.0", "0.2.0"},
			hint: []string{"install weir 0.2.0 on node n2 and restart it"},
		},
		{name: "pre-release of the target", id: "n3", bin: "0.2.0-rc.1", active: "0.1.0", target: "0.2.0", want: ErrNodeBinary, hint: []string{"install weir 0.2.0 on node n3"}},
		{
			name: "binary too new for active", id: "n2", bin: "0.3.0", active: "0.1.0", target: "0.2.0", want: ErrOutsideWindow,
			msg:  []string{"node n2 runs weir 0.3.0", "active version 0.1.0", "0.2.0"},
			hint: []string{"install weir 0.2.0 on node n2 and restart it"},
		},
		{name: "major without MinCompatible", id: "n1", bin: "1.0.0", active: "0.9.1", target: "1.0.0", want: ErrOutsideWindow},
		{name: "invalid binary", id: "n2", bin: "garbage", active: "0.1.0", target: "0.2.0", want: ErrInvalid, msg: []string{"node n2", `"garbage"`}},
		{name: "empty binary", id: "n2", bin: "", active: "0.1.0", target: "0.2.0", want: ErrInvalid, msg: []string{"node n2"}},
		{name: "invalid MinCompatible", id: "n2", bin: "1.0.0", min: "0.9", active: "0.9.0", target: "1.0.0", want: ErrInvalid, msg: []string{"node n2"}},
		{name: "invalid active", id: "n1", bin: "0.2.0", active: "?", target: "0.2.0", want: ErrInvalid},
		{name: "invalid target", id: "n1", bin: "0.2.0", active: "0.1.0", target: "0.2.x", want: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkRefusal(t, CheckNode(tt.id, tt.bin, tt.min, tt.active, tt.target), tt.want, tt.msg, tt.hint)
		})
	}
}

func TestGates_TableIsValid(t *testing.T) {
	seen := map[string]bool{}
	for _, g := range Gates {
		if g.Name == "" || g.Description == "" {
			t.Errorf("gate %+v needs a name and a description", g)
		}
		if seen[g.Name] {
			t.Errorf("gate %q listed twice", g.Name)
		}
		seen[g.Name] = true
		if err := Valid(g.Since); err != nil {
			t.Errorf("gate %q: %v", g.Name, err)
		}
		if !Enabled(g.Name, g.Since) {
			t.Errorf("gate %q is off at its own Since %s", g.Name, g.Since)
		}
	}
}

func TestEnabled(t *testing.T) {
	tests := []struct {
		name, active string
		want         bool
	}{
		{"batch-crc32c", "0.2.0", true},
		{"batch-crc32c", "0.2.1", true},
		{"batch-crc32c", "0.3.0", true},
		{"batch-crc32c", "1.0.0", true},
		{"batch-crc32c", "0.2.0+build.3", true},
		{"batch-crc32c", "0.1.9", false},
		{"batch-crc32c", "0.1.0", false},
		{"batch-crc32c", "0.2.0-rc.1", false}, // a pre-release sorts below Since
		{"batch-crc32c", "", false},
		{"batch-crc32c", "garbage", false},
		{"batch-crc32c", "0.2", false},
		{"no-such-gate", "9.9.9", false},
		{"", "9.9.9", false},
	}
	for _, tt := range tests {
		t.Run(tt.name+"@"+tt.active, func(t *testing.T) {
			if got := Enabled(tt.name, tt.active); got != tt.want {
				t.Errorf("Enabled(%q, %q) = %v, want %v", tt.name, tt.active, got, tt.want)
			}
		})
	}
}

func TestEnabledGates(t *testing.T) {
	saved := Gates
	t.Cleanup(func() { Gates = saved })
	Gates = []Gate{
		{Name: "a", Since: "0.2.0", Description: "a"},
		{Name: "b", Since: "0.3.0", Description: "b"},
		{Name: "bad", Since: "0.3", Description: "an unparsable Since stays off"},
		{Name: "c", Since: "1.0.0", Description: "c"},
	}
	tests := []struct {
		active string
		want   []string
	}{
		{"", []string{}},
		{"garbage", []string{}},
		{"0.1.0", []string{}},
		{"0.2.0", []string{"a"}},
		{"0.3.0-rc.1", []string{"a"}},
		{"0.3.0", []string{"a", "b"}},
		{"0.9.9", []string{"a", "b"}},
		{"1.0.0", []string{"a", "b", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.active, func(t *testing.T) {
			got := EnabledGates(tt.active)
			if got == nil || !slices.Equal(got, tt.want) {
				t.Errorf("EnabledGates(%q) = %#v, want %#v", tt.active, got, tt.want)
			}
		})
	}
	if Enabled("bad", "9.9.9") {
		t.Error("a gate with an unparsable Since must stay off")
	}
}

func TestEnabledGates_Builtin(t *testing.T) {
	if got := EnabledGates("0.1.0"); len(got) != 0 {
		t.Errorf("EnabledGates(0.1.0) = %v, want none", got)
	}
	if got := EnabledGates("0.2.0"); !slices.Contains(got, "batch-crc32c") {
		t.Errorf("EnabledGates(0.2.0) = %v, want batch-crc32c", got)
	}
}
