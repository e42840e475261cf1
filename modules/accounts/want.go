package accounts

import (
	"fmt"
	"slices"

	"github.com/alize-eple/alize/modules"
	"github.com/alize-eple/alize/modules/accounts/roster"
)

// want is the desired state a spec and its roster give, before the
// directory is looked at.
type want struct {
	users  []*wantUser // by stable id
	byID   map[string]*wantUser
	groups map[string]*wantGroup // by cn
}

type wantUser struct {
	p         *roster.Person
	full      string // "Prénom Nom": cn and displayName
	gecos     string
	active    bool     // false: a leaver by exit date
	roleGroup string   // cn of the primary group
	groups    []string // cns of every group, the role group first
}

// Group kinds, as descriptions and plan summaries name them.
const (
	kindRole    = "role"
	kindClass   = "class"
	kindOption  = "option"
	kindTeam    = "team"
	kindService = "service"
	kindGroup   = "group"
)

type wantGroup struct {
	cn          string
	kind        string
	name        string // as the roster or spec gives it
	description string
}

// where names a person's field in messages: "roster.people[3].class" or
// "roster line 12, column class".
type where func(i int, field string) string

func inlineWhere(i int, field string) string {
	return fmt.Sprintf("roster.people[%d].%s", i, field)
}

func lineWhere(lines []int) where {
	return func(i int, field string) string {
		return fmt.Sprintf("roster line %d, column %s", lines[i], field)
	}
}

// wanted builds the desired state. s has its defaults; today is
// YYYY-MM-DD. Every problem of the people goes to errs; checked says
// each person and the ids' uniqueness were checked already (by
// roster.ParseCSV).
func wanted(s Spec, people []roster.Person, today string, at where, checked bool, errs *modules.FieldErrors) *want {
	w := &want{byID: make(map[string]*wantUser, len(people)), groups: map[string]*wantGroup{}}
	origin := map[string]func() string{} // cn → where it first came from, for collisions
	roleGroups := func() string { return "the role groups" }
	field := func(i int, f string, j ...int) func() string {
		return func() string {
			name := f
			if len(j) > 0 {
				name = fmt.Sprintf("%s[%d]", f, j[0])
			}
			return at(i, name)
		}
	}
	addGroup := func(kind, name, cn string, fromFn func() string, description string) string {
		if len(cn) > maxGroupCN {
			errs.Add(fromFn(), "%s gives the group name %s, over %d characters", roster.Quote(name), roster.Quote(cn), maxGroupCN)
			return ""
		}
		g, ok := w.groups[cn]
		switch {
		case !ok:
			w.groups[cn] = &wantGroup{cn: cn, kind: kind, name: name, description: description}
			origin[cn] = fromFn
		case g.kind != kind:
			errs.Add(fromFn(), "%s %s gives the group %s, as does %s %s (%s): rename one", kind, roster.Quote(name), cn, g.kind, roster.Quote(g.name), origin[cn]())
			return ""
		}
		return cn
	}
	addGroup(kindRole, "Élèves", GroupPupils, roleGroups, "Élèves")
	addGroup(kindRole, "Professeurs", GroupTeachers, roleGroups, "Professeurs")
	addGroup(kindRole, "Personnels administratifs", GroupStaff, roleGroups, "Personnels administratifs")
	for i, g := range s.Groups.Custom {
		if roster.CheckGroupName(g.Name) != "" {
			continue // Validate reported it
		}
		d := g.Description
		if d == "" {
			d = "Groupe " + g.Name
		}
		addGroup(kindGroup, g.Name, groupCN(g.Name), func() string { return fmt.Sprintf("groups.custom[%d].name", i) }, d)
	}

	seen := make(map[string]int, len(people))
	for i := range people {
		p := &people[i]
		if !checked {
			bad := false
			for _, pr := range roster.Check(*p) {
				errs.Add(at(i, pr.Field), "%s", pr.Message)
				bad = true
			}
			if j, dup := seen[p.ID]; dup && p.ID != "" {
				errs.Add(at(i, "id"), "%s is also the id of %s: a stable id names one person", roster.Quote(p.ID), at(j, "id"))
				bad = true
			}
			seen[p.ID] = i
			if bad {
				continue
			}
		}
		u := &wantUser{p: p, active: p.ExitDate == "" || p.ExitDate > today, full: p.FirstName + " " + p.LastName}
		u.gecos = gecos(u.full)
		switch p.Role {
		case roster.Pupil:
			u.roleGroup = GroupPupils
		case roster.Teacher:
			u.roleGroup = GroupTeachers
		default:
			u.roleGroup = GroupStaff
		}
		u.groups = append(u.groups, u.roleGroup)
		member := func(cn string) {
			if cn != "" && !slices.Contains(u.groups, cn) {
				u.groups = append(u.groups, cn)
			}
		}
		if p.Class != "" {
			member(addGroup(kindClass, p.Class, groupCN(p.Class), field(i, "class"), "Classe "+p.Class))
			addGroup(kindTeam, p.Class, s.Groups.TeamPrefix+groupCN(p.Class), field(i, "class"), "Équipe pédagogique "+p.Class)
		}
		for j, o := range p.Options {
			member(addGroup(kindOption, o, groupCN(o), field(i, "options", j), "Option "+o))
		}
		for j, c := range p.Teaches {
			member(addGroup(kindTeam, c, s.Groups.TeamPrefix+groupCN(c), field(i, "teaches", j), "Équipe pédagogique "+c))
		}
		for j, sv := range p.Services {
			member(addGroup(kindService, sv, groupCN(sv), field(i, "services", j), "Service "+sv))
		}
		for j, g := range p.Groups {
			member(addGroup(kindGroup, g, groupCN(g), field(i, "groups", j), "Groupe "+g))
		}
		w.users = append(w.users, u)
		w.byID[p.ID] = u
	}
	slices.SortFunc(w.users, func(a, b *wantUser) int {
		switch {
		case a.p.ID < b.p.ID:
			return -1
		case a.p.ID > b.p.ID:
			return 1
		}
		return 0
	})
	return w
}
