package screen

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Evaluation of the detectors on a labelled corpus (`portcullis eval
// screen`): per category, how many attacks a detector finds and how many
// benign texts it flags, at the threshold it runs with in the gateway.

// CategoryRow is one category of a corpus.
type CategoryRow struct {
	Category      string  `json:"category"`
	Attacks       int     `json:"attacks"`
	Detected      int     `json:"detected"`
	DetectionRate float64 `json:"detection_rate"`
	Benign        int     `json:"benign"`
	Flagged       int     `json:"flagged"`
	FPRate        float64 `json:"false_positive_rate"`
}

// EntityRow is span-level quality for one personal-data type, on records
// that list their entity spans (Presidio's synthetic sentences).
type EntityRow struct {
	Type      string  `json:"type"`
	TP        int     `json:"true_positives"`
	FP        int     `json:"false_positives"`
	FN        int     `json:"false_negatives"`
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	F1        float64 `json:"f1"`
}

// Report is the result of an evaluation.
type Report struct {
	Detector   string        `json:"detector"`
	Threshold  string        `json:"threshold"`
	Records    int           `json:"records"`
	Categories []CategoryRow `json:"categories"`
	Total      CategoryRow   `json:"total"`
	Entities   []EntityRow   `json:"entities,omitempty"`
	Throughput Throughput    `json:"throughput"`
}

// Throughput is how fast the detector screened the corpus in the run that
// produced the report: the time spent judging the texts (normalisation
// included), not reading the corpus.
type Throughput struct {
	Seconds          float64 `json:"seconds"`
	Bytes            int64   `json:"bytes"` // of text screened
	RecordsPerSecond float64 `json:"records_per_second"`
	MBPerSecond      float64 `json:"mb_per_second"` // 10^6 bytes
}

func (t *Throughput) measure(records int, elapsed time.Duration) {
	t.Seconds = elapsed.Seconds()
	if t.Seconds > 0 {
		t.RecordsPerSecond = float64(records) / t.Seconds
		t.MBPerSecond = float64(t.Bytes) / 1e6 / t.Seconds
	}
}

// DetectorFor guesses the detector a corpus exercises from its records'
// sources: gitleaks' rule tests are secrets, Presidio's are personal data,
// anything else is read as prompt injection.
func DetectorFor(recs []Record) string {
	for _, r := range recs {
		switch {
		case strings.Contains(r.Source, "gitleaks"):
			return CategorySecret
		case strings.Contains(r.Source, "presidio"):
			return CategoryPersonal
		}
	}
	return CategoryInjection
}

// Evaluate runs detector (a Category*) over recs. threshold overrides the
// injection classifier's threshold when positive.
func Evaluate(recs []Record, detector string, threshold float64) (*Report, error) {
	rep := &Report{Detector: detector, Records: len(recs)}
	var hit func(r *Record) bool
	switch detector {
	case CategoryInjection:
		m, err := EmbeddedModel()
		if err != nil {
			return nil, err
		}
		t := float64(m.Threshold)
		if threshold > 0 {
			t = threshold
		}
		rep.Threshold = fmt.Sprintf("%.3f (document score: the highest of the technique patterns and the classifier's best segment)", t)
		hit = func(r *Record) bool { return InjectionScore(m, Normalize(r.Text).Text) >= t }
	case CategorySecret:
		sr, err := DefaultSecretRules()
		if err != nil {
			return nil, err
		}
		rep.Threshold = "gitleaks rule decision (regex, entropy floor, allowlists); benign texts count as flagged only by their own rule"
		hit = func(r *Record) bool {
			for _, f := range sr.Detect(r.Text) {
				// A rule's hard negatives are often true secrets of
				// another kind: judge them against their own rule.
				if r.Attack() || f.Rule == r.Category {
					return true
				}
			}
			return false
		}
	case CategoryPersonal:
		rep.Threshold = "checksum or structure (no score); recognizer cases count only for the types detected"
		hit = func(r *Record) bool {
			want := presidioType(r.Category)
			for _, f := range DetectPersonal(Normalize(r.Text).Text) {
				if want == "" || f.Rule == want {
					return true
				}
			}
			return false
		}
		rep.Entities = entityScores(recs)
	case CategoryExfiltration:
		rep.Threshold = "any exfiltration finding"
		hit = func(r *Record) bool { return len(DetectExfiltration(r.Text)) > 0 }
	default:
		return nil, fmt.Errorf("unknown detector %q (want one of %v)", detector, Categories)
	}
	rows := map[string]*CategoryRow{}
	screened, began := 0, time.Now()
	for i := range recs {
		r := &recs[i]
		if detector == CategoryPersonal && strings.HasPrefix(r.Category, "recognizer_test/") && presidioType(r.Category) == "" {
			continue // an entity type this detector does not claim
		}
		row := rows[r.Category]
		if row == nil {
			row = &CategoryRow{Category: r.Category}
			rows[r.Category] = row
		}
		h := hit(r)
		row.tally(r.Attack(), h)
		rep.Total.tally(r.Attack(), h)
		screened++
		rep.Throughput.Bytes += int64(len(r.Text))
	}
	rep.Throughput.measure(screened, time.Since(began))
	for _, row := range rows {
		row.rates()
		rep.Categories = append(rep.Categories, *row)
	}
	sort.Slice(rep.Categories, func(i, j int) bool { return rep.Categories[i].Category < rep.Categories[j].Category })
	rep.Total.Category = "total"
	rep.Total.rates()
	return rep, nil
}

// tally counts one text: an attack detected or not, a benign text flagged
// or not.
func (r *CategoryRow) tally(attack, hit bool) {
	switch {
	case attack:
		r.Attacks++
		if hit {
			r.Detected++
		}
	default:
		r.Benign++
		if hit {
			r.Flagged++
		}
	}
}

func (r *CategoryRow) rates() {
	if r.Attacks > 0 {
		r.DetectionRate = float64(r.Detected) / float64(r.Attacks)
	}
	if r.Benign > 0 {
		r.FPRate = float64(r.Flagged) / float64(r.Benign)
	}
}

// presidioType maps a Presidio recognizer-test category to the
// personal-data type this package detects for it ("" when none).
func presidioType(category string) string {
	switch strings.TrimPrefix(category, "recognizer_test/") {
	case "credit_card":
		return PIIPaymentCard
	case "email":
		return PIIEmail
	case "iban":
		return PIIIBAN
	case "us_ssn":
		return PIIUSSSN
	case "phone":
		return PIIPhone
	case "ip":
		return PIIIPAddress
	case "es_nif", "es_nie":
		return PIIESNIF
	case "fi_personal_identity_code":
		return PIIFIHETU
	case "se_personnummer":
		return PIISEPersonnummer
	case "ca_sin":
		return PIICASIN
	case "uk_nhs":
		return PIIUKNHS
	case "in_aadhaar":
		return PIIINAadhaar
	case "tr_national_id":
		return PIITRTCKN
	case "pl_pesel":
		return PIIPLPESEL
	}
	return ""
}

// presidioEntity maps Presidio's span entity types to ours.
var presidioEntity = map[string]string{
	"EMAIL_ADDRESS": PIIEmail, "CREDIT_CARD": PIIPaymentCard, "IBAN_CODE": PIIIBAN,
	"US_SSN": PIIUSSSN, "PHONE_NUMBER": PIIPhone, "IP_ADDRESS": PIIIPAddress,
}

// entityScores compares detected spans with the listed entity spans of
// records that have them: a detection overlapping a listed entity of its
// type is a true positive.
func entityScores(recs []Record) []EntityRow {
	rows := map[string]*EntityRow{}
	row := func(t string) *EntityRow {
		if rows[t] == nil {
			rows[t] = &EntityRow{Type: t}
		}
		return rows[t]
	}
	for _, r := range recs {
		spans, ok := r.Meta["spans"].([]any)
		if !ok {
			continue
		}
		type ent struct {
			typ        string
			start, end int
			matched    bool
		}
		var ents []*ent
		for _, s := range spans {
			m, _ := s.(map[string]any)
			typ, ok := presidioEntity[fmt.Sprint(m["entity_type"])]
			if !ok {
				continue
			}
			st, _ := m["start"].(float64)
			en, _ := m["end"].(float64)
			ents = append(ents, &ent{typ: typ, start: int(st), end: int(en)})
		}
		for _, f := range DetectPersonal(r.Text) {
			matched := false
			for _, e := range ents {
				if e.typ == f.Rule && f.Start < e.end && e.start < f.End {
					matched = true
					if !e.matched {
						e.matched = true
						row(f.Rule).TP++
					}
				}
			}
			if !matched {
				row(f.Rule).FP++
			}
		}
		for _, e := range ents {
			if !e.matched {
				row(e.typ).FN++
			}
		}
	}
	var out []EntityRow
	for _, r := range rows {
		if r.TP+r.FP > 0 {
			r.Precision = float64(r.TP) / float64(r.TP+r.FP)
		}
		if r.TP+r.FN > 0 {
			r.Recall = float64(r.TP) / float64(r.TP+r.FN)
		}
		if r.Precision+r.Recall > 0 {
			r.F1 = 2 * r.Precision * r.Recall / (r.Precision + r.Recall)
		}
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}
