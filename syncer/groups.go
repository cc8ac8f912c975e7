package syncer

import (
	"encoding/binary"
	"slices"
	"strings"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/directory"
)

// target is a group the plan cares about: a mapped group (rule 5) or AD's
// built-in Users group (rule 2). Membership is only ever resolved towards
// these, so the work per user is a bit set of a handful of targets, not the
// whole group graph.
type target struct {
	roles   []string // roles mapped to this DN (highest wins)
	name    string   // cn, for X-Forwarded-Groups
	builtin bool     // CN=Users,CN=Builtin,<base>
	mapped  bool
}

// bits is a bit set over the targets.
type bits []uint64

func (b bits) set(i int)      { b[i/64] |= 1 << (i % 64) }
func (b bits) has(i int) bool { return b[i/64]&(1<<(i%64)) != 0 }
func (b bits) or(o bits) {
	for i := range b {
		b[i] |= o[i]
	}
}
func (b bits) zero() bool { return !slices.ContainsFunc(b, func(w uint64) bool { return w != 0 }) }

// key is a map key for the set's value.
func (b bits) key() string {
	buf := make([]byte, 0, 8*len(b))
	for _, w := range b {
		buf = binary.LittleEndian.AppendUint64(buf, w)
	}
	return string(buf)
}

// membership resolves, once per plan, which targets every user reaches:
// directly, through nested groups (cycles included), through posix
// memberUid, through memberOf, and through AD's primary group.
type membership struct {
	targets []target
	words   int
	builtin int // index of the AD Users target, -1 if not AD

	byDN    map[string]bits // normalized member DN that is no group read (a user, or an unread group) → targets
	byUID   map[string]bits // lower-cased login name → targets (posix memberUid)
	nodeOf  map[string]int  // normalized group DN → node
	node    []bits          // node → targets reached (itself included)
	byRID   map[uint32]bits // AD primary group RID → targets
	onlyMOf bool            // group_name_attribute: memberOf

	interned map[string]interned
	roles    []string
}

type interned struct {
	role   string
	groups []string
}

// newMembership builds the group graph from the groups read. Users are
// placed in it one at a time (of), so they can be planned as they are read.
// Groups are nodes;
// an edge child→parent comes from a parent's member/uniqueMember value that
// names another group, or from a group's own memberOf. Each target then
// marks every node that reaches it (a reverse breadth-first walk with a
// visited set, so cycles end).
func newMembership(dir config.Directory, roles []string, groups []directory.Group) *membership {
	m := &membership{
		builtin:  -1,
		byDN:     map[string]bits{},
		byUID:    map[string]bits{},
		nodeOf:   map[string]int{},
		byRID:    map[uint32]bits{},
		onlyMOf:  strings.EqualFold(dir.GroupNameAttribute, "memberOf"),
		interned: map[string]interned{},
		roles:    roles,
	}
	targetOf := map[string]int{}
	addTarget := func(dn string) int {
		n := normalizeDN(dn)
		if i, ok := targetOf[n]; ok {
			return i
		}
		targetOf[n] = len(m.targets)
		m.targets = append(m.targets, target{name: rdnValue(dn)})
		return len(m.targets) - 1
	}
	// Role mapping in a fixed order so equal inputs give equal plans.
	mappedRoles := make([]string, 0, len(dir.RoleMapping))
	for r := range dir.RoleMapping {
		mappedRoles = append(mappedRoles, r)
	}
	slices.Sort(mappedRoles)
	for _, r := range mappedRoles {
		for _, dn := range dir.RoleMapping[r] {
			i := addTarget(dn)
			m.targets[i].mapped = true
			m.targets[i].roles = append(m.targets[i].roles, r)
		}
	}
	if dir.Type == config.TypeActiveDirectory {
		m.builtin = addTarget("CN=Users,CN=Builtin," + dir.BaseDN)
		m.targets[m.builtin].builtin = true
	}
	m.words = (len(m.targets) + 63) / 64
	if m.words == 0 {
		m.words = 1
	}

	// Nodes: every group entry, every target, and every DN some memberOf
	// names (those are groups even when their entry lies outside groups_dn,
	// as AD's CN=Builtin usually does).
	addNode := func(n string) int {
		if i, ok := m.nodeOf[n]; ok {
			return i
		}
		m.nodeOf[n] = len(m.node)
		m.node = append(m.node, nil)
		return len(m.node) - 1
	}
	groupNode := make([]int, len(groups))
	for i, g := range groups {
		n := normalizeDN(g.DN)
		groupNode[i] = addNode(n)
		if t, ok := targetOf[n]; ok && g.Name != "" {
			m.targets[t].name = g.Name
		}
	}
	for n := range targetOf {
		addNode(n)
	}
	for _, g := range groups {
		for _, p := range g.MemberOf {
			addNode(normalizeDN(p))
		}
	}

	// children[parent] = nodes that are direct members of parent.
	children := make([][]int, len(m.node))
	for i, g := range groups {
		gi := groupNode[i]
		for _, mem := range g.Members {
			if c, ok := m.nodeOf[normalizeDN(mem)]; ok && c != gi {
				children[gi] = append(children[gi], c)
			}
		}
		for _, p := range g.MemberOf {
			if pi := m.nodeOf[normalizeDN(p)]; pi != gi {
				children[pi] = append(children[pi], gi)
			}
		}
	}
	for i := range m.node {
		m.node[i] = make(bits, m.words)
	}
	seen := make([]bool, len(m.node))
	var queue []int
	for n, t := range targetOf {
		clear(seen)
		start := m.nodeOf[n]
		queue = append(queue[:0], start)
		seen[start] = true
		for len(queue) > 0 {
			cur := queue[0]
			queue = queue[1:]
			m.node[cur].set(t)
			for _, c := range children[cur] {
				if !seen[c] {
					seen[c] = true
					queue = append(queue, c)
				}
			}
		}
	}

	// User edges. With memberOf naming only the users' own memberOf counts
	// (and the primary group, which AD never lists in memberOf).
	for i, g := range groups {
		b := m.node[groupNode[i]]
		if b.zero() {
			continue
		}
		if rid, ok := directory.SIDRID(g.SID); ok {
			addBitsTo(m.words, m.byRID, rid, b)
		}
		// Kept with memberOf naming too: a user's memberOf may name a
		// group whose entry was not read (outside groups_dn) but which is
		// a member of one that was; it reaches what that one reaches.
		for _, mem := range g.Members {
			n := normalizeDN(mem)
			if _, isGroup := m.nodeOf[n]; !isGroup {
				addBitsTo(m.words, m.byDN, n, b)
			}
		}
		if m.onlyMOf {
			continue
		}
		for _, uid := range g.MemberUIDs {
			addBitsTo(m.words, m.byUID, account.NormalizeName(uid), b)
		}
	}
	return m
}

func addBitsTo[K comparable](words int, mp map[K]bits, k K, b bits) {
	cur, ok := mp[k]
	if !ok {
		cur = make(bits, words)
		mp[k] = cur
	}
	cur.or(b)
}

// of returns the targets user u reaches.
func (m *membership) of(u *directory.User) bits {
	b := make(bits, m.words)
	if !m.onlyMOf {
		if x, ok := m.byDN[normalizeDN(u.DN)]; ok {
			b.or(x)
		}
		if x, ok := m.byUID[account.NormalizeName(u.Username)]; ok {
			b.or(x)
		}
	}
	for _, p := range u.MemberOf {
		n := normalizeDN(p)
		if i, ok := m.nodeOf[n]; ok {
			b.or(m.node[i])
		} else if x, ok := m.byDN[n]; ok {
			b.or(x)
		}
	}
	// Rule 2: the primary group counts as a direct membership.
	if u.PrimaryGroupID != 0 {
		if x, ok := m.byRID[u.PrimaryGroupID]; ok {
			b.or(x)
		}
	}
	return b
}

// inADUsers reports rule 2 for a user's bit set (always true off AD).
func (m *membership) inADUsers(b bits) bool { return m.builtin < 0 || b.has(m.builtin) }

// roleAndGroups returns the highest mapped role ("" if none) and the sorted
// names of the mapped groups in b. Results are shared between users with the
// same bit set: 100k users usually fall into a few dozen combinations.
func (m *membership) roleAndGroups(b bits) (string, []string) {
	k := b.key()
	if r, ok := m.interned[k]; ok {
		return r.role, r.groups
	}
	var role string
	var groups []string
	for i, t := range m.targets {
		if !t.mapped || !b.has(i) {
			continue
		}
		for _, r := range t.roles {
			if role == "" {
				role = r
			} else {
				role = account.HigherRole(m.roles, role, r)
			}
		}
		if t.name != "" && !slices.Contains(groups, t.name) {
			groups = append(groups, t.name)
		}
	}
	slices.Sort(groups)
	m.interned[k] = interned{role, groups}
	return role, groups
}
