package schedule

import (
	"errors"
	"testing"
	"time"
)

// A fixed zone far from UTC: a schedule that used UTC instead of the time's
// own location would be off by hours.
var zone = time.FixedZone("UTC+5:30", 5*3600+1800)

func at(y int, m time.Month, d, h, min int) time.Time {
	return time.Date(y, m, d, h, min, 0, 0, zone)
}

func TestNext(t *testing.T) {
	wed := at(2025, time.March, 5, 9, 0) // a Wednesday
	if wed.Weekday() != time.Wednesday {
		t.Fatalf("fixture: %v is not a Wednesday", wed)
	}
	tests := []struct {
		spec string
		from time.Time
		want []time.Time // successive Next results
	}{
		// The platform guide's two examples (SPEC §4).
		{"15 10 * * * 0", wed, []time.Time{at(2025, time.March, 9, 10, 15), at(2025, time.March, 16, 10, 15)}},
		{"00 12 1,16 * * *", wed, []time.Time{at(2025, time.March, 16, 12, 0), at(2025, time.April, 1, 12, 0), at(2025, time.April, 16, 12, 0)}},

		{"hourly", wed, []time.Time{at(2025, time.March, 5, 10, 0), at(2025, time.March, 5, 11, 0)}},
		{"HOURLY", at(2025, time.March, 5, 9, 59), []time.Time{at(2025, time.March, 5, 10, 0)}},
		{"daily 03:00", wed, []time.Time{at(2025, time.March, 6, 3, 0), at(2025, time.March, 7, 3, 0)}},
		{"daily 9:30", wed, []time.Time{at(2025, time.March, 5, 9, 30)}},
		{"Daily 23:59", wed, []time.Time{at(2025, time.March, 5, 23, 59)}},
		{"weekly mon 04:30", wed, []time.Time{at(2025, time.March, 10, 4, 30), at(2025, time.March, 17, 4, 30)}},
		{"weekly Sunday 10:15", wed, []time.Time{at(2025, time.March, 9, 10, 15)}},
		{"weekly SAT 00:00", wed, []time.Time{at(2025, time.March, 8, 0, 0)}},
		{"weekly 0 10:15", wed, []time.Time{at(2025, time.March, 9, 10, 15)}},
		{"weekly 7 10:15", wed, []time.Time{at(2025, time.March, 9, 10, 15)}},
		{"weekly 3 08:00", wed, []time.Time{at(2025, time.March, 12, 8, 0)}}, // 09:00 today is past 08:00
		{"30 2 * * 1-5", wed, []time.Time{at(2025, time.March, 6, 2, 30), at(2025, time.March, 7, 2, 30), at(2025, time.March, 10, 2, 30)}},
		{"*/20 * * * *", wed, []time.Time{at(2025, time.March, 5, 9, 20), at(2025, time.March, 5, 9, 40)}},
		{"@daily", wed, []time.Time{at(2025, time.March, 6, 0, 0)}},
		{"  0   6 * * *  ", wed, []time.Time{at(2025, time.March, 6, 6, 0)}},

		// Year restrictions of the 6-field form.
		{"0 12 1 1 2027 *", wed, []time.Time{at(2027, time.January, 1, 12, 0), {}}},
		{"0 0 1 1 2026,2028 *", wed, []time.Time{at(2026, time.January, 1, 0, 0), at(2028, time.January, 1, 0, 0), {}}},
		{"0 0 1 * 2025-2026 *", at(2026, time.November, 15, 0, 0), []time.Time{at(2026, time.December, 1, 0, 0), {}}},
		{"0 0 1 1 2030/5 *", wed, []time.Time{at(2030, time.January, 1, 0, 0), at(2035, time.January, 1, 0, 0)}},
		{"0 0 * * 2024 *", wed, []time.Time{{}}}, // only past years: never again
		{"15 10 * * ? 0", wed, []time.Time{at(2025, time.March, 9, 10, 15)}},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			s, err := Parse(tt.spec)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			from := tt.from
			for i, want := range tt.want {
				got := s.Next(from)
				if !got.Equal(want) {
					t.Fatalf("Next #%d from %v = %v, want %v", i+1, from, got, want)
				}
				if !got.IsZero() && got.Location() != zone {
					t.Fatalf("Next #%d in %v, want the caller's zone %v", i+1, got.Location(), zone)
				}
				if got.IsZero() {
					break
				}
				from = got
			}
		})
	}
}

func TestSundayExampleIsSunday(t *testing.T) {
	s, err := Parse("15 10 * * * 0")
	if err != nil {
		t.Fatal(err)
	}
	from := at(2025, time.March, 5, 9, 0)
	for range 10 {
		from = s.Next(from)
		if from.Weekday() != time.Sunday || from.Hour() != 10 || from.Minute() != 15 {
			t.Fatalf("fired at %v (%v), want Sundays 10:15", from, from.Weekday())
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, spec := range []string{
		"",
		"   ",
		"hourly 5",
		"daily",
		"daily 24:00",
		"daily 12:60",
		"daily 1200",
		"daily 12:5",
		"daily -1:00",
		"daily 12:00 extra",
		"weekly 10:00",
		"weekly funday 10:00",
		"weekly 8 10:00",
		"weekly mon",
		"weekly -0 10:00",
		"* * * *",
		"60 * * * *",
		"* 24 * * *",
		"* * 32 * *",
		"* * * 13 *",
		"* * * * 8",
		"0 0 * * * * *",
		"0 0 * * 1969 *",
		"0 0 * * 2100 *",
		"0 0 * * 2026-2025 *",
		"0 0 * * 2025/0 *",
		"0 0 * * abc *",
		"0 0 * * 2025,, *",
		"0 0 * * 2025 9",
		"TZ=UTC",
		"CRON_TZ=Europe/Paris 0 3 * * *",
		"tz=UTC 0 3 * * *",
		"@yearly-ish",
		"every day",
	} {
		t.Run(spec, func(t *testing.T) {
			_, err := Parse(spec)
			if err == nil {
				t.Fatalf("Parse(%q) = nil error, want one", spec)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrInvalid", spec, err)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"hourly", "daily 03:00", "weekly mon 04:30", "15 10 * * * 0", "00 12 1,16 * * *", "0 0 * * 2025-2030/2 *", "TZ=UTC", "@every 1h"} {
		f.Add(s)
	}
	from := time.Date(2025, 3, 5, 9, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := Parse(spec)
		if err != nil {
			return
		}
		if n := s.Next(from); !n.IsZero() && !n.After(from) {
			t.Fatalf("Next(%v) = %v, not after", from, n)
		}
	})
}
