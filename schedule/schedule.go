// Package schedule parses the sync schedules of SPEC §4 into
// github.com/robfig/cron/v3 schedules:
//
//	hourly                  every hour at minute 0
//	daily HH:MM             every day at HH:MM
//	weekly DAY HH:MM        DAY is mon..sun, monday..sunday (any case) or 0-7 (0 and 7 = Sunday)
//	M H DOM MON DOW         a standard 5-field cron expression (also @daily, @every 1h, ...)
//	M H DOM MON YEAR DOW    the platform's 6-field form: the 5th field is the year
//
// Times are in the location of the time given to Next (the server's zone
// when called with time.Now()); a schedule never carries its own zone.
package schedule

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// ErrInvalid is wrapped by every error Parse returns.
var ErrInvalid = errors.New("invalid schedule")

// Year bounds of the 6-field form (the platform's, like Quartz's).
const (
	MinYear = 1970
	MaxYear = 2099
)

var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

var days = map[string]int{
	"sun": 0, "sunday": 0,
	"mon": 1, "monday": 1,
	"tue": 2, "tues": 2, "tuesday": 2,
	"wed": 3, "wednesday": 3,
	"thu": 4, "thur": 4, "thurs": 4, "thursday": 4,
	"fri": 5, "friday": 5,
	"sat": 6, "saturday": 6,
}

// Parse reads a schedule in any of the package's forms.
func Parse(spec string) (cron.Schedule, error) {
	s, err := parse(spec)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %s", ErrInvalid, strings.TrimSpace(spec), err)
	}
	return s, nil
}

func parse(spec string) (cron.Schedule, error) {
	fields := strings.Fields(spec)
	if len(fields) == 0 {
		return nil, errors.New("empty")
	}
	// cron's own TZ= prefix slices past the string on "TZ=UTC" alone
	// (panic), and SPEC §4 says schedules run in the server's zone anyway.
	if up := strings.ToUpper(fields[0]); strings.HasPrefix(up, "TZ=") || strings.HasPrefix(up, "CRON_TZ=") {
		return nil, errors.New("time zones are not supported: schedules run in the server's zone")
	}
	switch strings.ToLower(fields[0]) {
	case "hourly":
		if len(fields) != 1 {
			return nil, errors.New(`"hourly" takes no arguments`)
		}
		return parser.Parse("0 * * * *")
	case "daily":
		if len(fields) != 2 {
			return nil, errors.New(`want "daily HH:MM"`)
		}
		h, m, err := clock(fields[1])
		if err != nil {
			return nil, err
		}
		return parser.Parse(fmt.Sprintf("%d %d * * *", m, h))
	case "weekly":
		if len(fields) != 3 {
			return nil, errors.New(`want "weekly DAY HH:MM"`)
		}
		dow, err := weekday(fields[1])
		if err != nil {
			return nil, err
		}
		h, m, err := clock(fields[2])
		if err != nil {
			return nil, err
		}
		return parser.Parse(fmt.Sprintf("%d %d * * %d", m, h, dow))
	}
	if strings.HasPrefix(fields[0], "@") {
		return parser.Parse(strings.Join(fields, " "))
	}
	switch len(fields) {
	case 5:
		return parser.Parse(strings.Join(fields, " "))
	case 6:
		years, err := parseYears(fields[4])
		if err != nil {
			return nil, fmt.Errorf("year field: %s", err)
		}
		inner, err := parser.Parse(strings.Join([]string{fields[0], fields[1], fields[2], fields[3], fields[5]}, " "))
		if err != nil {
			return nil, err
		}
		if years == nil {
			return inner, nil
		}
		return &yearSchedule{inner: inner, years: years}, nil
	}
	return nil, fmt.Errorf("want hourly, daily HH:MM, weekly DAY HH:MM, or a cron expression of 5 or 6 fields (got %d fields)", len(fields))
}

// clock reads HH:MM (24-hour; H:MM accepted).
func clock(s string) (h, m int, err error) {
	hs, ms, ok := strings.Cut(s, ":")
	if !ok || len(hs) < 1 || len(hs) > 2 || len(ms) != 2 {
		return 0, 0, fmt.Errorf("time %q: want HH:MM", s)
	}
	h, err1 := strconv.Atoi(hs)
	m, err2 := strconv.Atoi(ms)
	if err1 != nil || err2 != nil || h < 0 || h > 23 || m < 0 || m > 59 || hs[0] == '+' || hs[0] == '-' {
		return 0, 0, fmt.Errorf("time %q: want HH:MM between 00:00 and 23:59", s)
	}
	return h, m, nil
}

func weekday(s string) (int, error) {
	if d, ok := days[strings.ToLower(s)]; ok {
		return d, nil
	}
	if n, err := strconv.Atoi(s); err == nil && n >= 0 && n <= 7 && s[0] != '+' && s[0] != '-' {
		return n % 7, nil // cron knows 0-6 only; 7 is Sunday too
	}
	return 0, fmt.Errorf("day %q: want mon..sun, monday..sunday or 0-7", s)
}

// yearSet is the allowed years, MinYear..MaxYear.
type yearSet [MaxYear - MinYear + 1]bool

func (y *yearSet) has(year int) bool {
	return year >= MinYear && year <= MaxYear && y[year-MinYear]
}

// next is the first allowed year ≥ year, or 0.
func (y *yearSet) next(year int) int {
	for year = max(year, MinYear); year <= MaxYear; year++ {
		if y[year-MinYear] {
			return year
		}
	}
	return 0
}

// parseYears reads the year field: *, ?, a year, a list, a range, with an
// optional /step, like the other cron fields. nil means every year.
func parseYears(f string) (*yearSet, error) {
	if f == "*" || f == "?" {
		return nil, nil
	}
	var set yearSet
	for item := range strings.SplitSeq(f, ",") {
		rng, stepS, hasStep := strings.Cut(item, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepS)
			if err != nil || n <= 0 || stepS[0] == '+' {
				return nil, fmt.Errorf("%q: step must be a positive number", item)
			}
			step = n
		}
		lo, hi := MinYear, MaxYear
		if rng != "*" {
			a, b, isRange := strings.Cut(rng, "-")
			var err error
			if lo, err = year(a); err != nil {
				return nil, err
			}
			hi = lo
			if isRange {
				if hi, err = year(b); err != nil {
					return nil, err
				}
				if hi < lo {
					return nil, fmt.Errorf("%q: range ends before it starts", item)
				}
			} else if hasStep {
				hi = MaxYear // "2025/2" = every second year from 2025
			}
		}
		for y := lo; y <= hi; y += step {
			set[y-MinYear] = true
		}
	}
	return &set, nil
}

func year(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || s == "" || s[0] == '+' || s[0] == '-' || n < MinYear || n > MaxYear {
		return 0, fmt.Errorf("year %q: want %d-%d", s, MinYear, MaxYear)
	}
	return n, nil
}

// yearSchedule restricts a schedule to some years: once they are past it
// never fires again (Next returns the zero time, which cron treats as never).
type yearSchedule struct {
	inner cron.Schedule
	years *yearSet
}

func (s *yearSchedule) Next(t time.Time) time.Time {
	// Each turn either returns or moves t into a later allowed year, so the
	// loop ends after at most MaxYear-MinYear turns.
	for {
		n := s.inner.Next(t)
		if n.IsZero() || s.years.has(n.Year()) {
			return n
		}
		y := s.years.next(n.Year() + 1)
		if y == 0 {
			return time.Time{}
		}
		// Just before midnight of 1 January, so that 00:00:00 itself can match:
		// cron's Next returns times strictly after its argument.
		t = time.Date(y, time.January, 1, 0, 0, 0, 0, n.Location()).Add(-time.Nanosecond)
	}
}
