package profile

import (
	"slices"
	"strconv"
	"time"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// InWindow reports whether now is inside one of the weekly UTC windows (none: always), and, when
// it is not, when the next one opens (zero when always open). A window that does not parse (the
// API's validation lets none through) never opens: a run waits rather than move a cluster at a
// time nobody chose; with no window that parses, next is zero.
func InWindow(windows []v1alpha1.MaintenanceWindow, now time.Time) (open bool, next time.Time) {
	if len(windows) == 0 {
		return true, time.Time{}
	}
	now = now.UTC()
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	for _, w := range windows {
		start, ok := timeOfDay(w.Start)
		if !ok || w.Hours < 1 || w.Hours > 24 {
			continue
		}
		// A window of at most 24 hours that holds now opened today or yesterday; the next
		// opening is at most a week away.
		for day := -1; day <= 7; day++ {
			opens := midnight.AddDate(0, 0, day).Add(start)
			if len(w.Days) > 0 && !slices.Contains(w.Days, opens.Weekday().String()[:3]) {
				continue
			}
			closes := opens.Add(time.Duration(w.Hours) * time.Hour)
			if !now.Before(opens) && now.Before(closes) {
				return true, time.Time{}
			}
			if opens.After(now) && (next.IsZero() || opens.Before(next)) {
				next = opens
			}
		}
	}
	return false, next
}

// timeOfDay reads HH:MM as the time since midnight.
func timeOfDay(s string) (time.Duration, bool) {
	if len(s) != 5 || s[2] != ':' {
		return 0, false
	}
	h, errH := strconv.Atoi(s[:2])
	m, errM := strconv.Atoi(s[3:])
	if errH != nil || errM != nil || h < 0 || h > 23 || m < 0 || m > 59 {
		return 0, false
	}
	return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute, true
}
