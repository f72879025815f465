package screen

import "strings"

// The lexicon the classifier's form features read: classes of general
// English words that mark a request or command whatever its topic. These
// are word lists of the language, not phrases from any corpus; the
// trainer weighs them, it does not choose them.

// cue is a class of words that signals a request or command regardless of
// topic.
type cue uint16

const (
	cueAction       cue = 1 << iota // an imperative-capable verb of doing
	cuePolite                       // please, kindly
	cueFirstPerson                  // my, me, mine, our
	cueSecondPerson                 // you, your
	cueOverride                     // ignore, disregard, forget, instead, instructions
	cueModal                        // must, should, need, immediately, urgent
	cueDestination                  // email, address, url, account, website, link
	cueReader                       // the AI that reads the text: assistant, model, agent
	cueReply                        // what the reader produces: response, reply, answer, output
	cueLeadIn                       // words an imperative may follow: please, now, then, also
)

// Word classes in the form n-grams: a word of the lexicon's closed
// classes (pronouns, determiners, prepositions, conjunctions, modals, the
// cue words) stands for itself; an open-class word stands for its class.
const (
	classSelf  byte = 0   // the word itself
	classVerb  byte = 'V' // a verb in its base form (may be an imperative)
	classDest  byte = 'D' // a destination noun
	classReply byte = 'R' // a reply noun
	classAI    byte = 'A' // a name for the reading model
	classOther byte = 'x' // any other word
	classNum   byte = '9' // a word that starts with a digit
)

type lexEntry struct {
	word  string
	c     cue
	class byte
}

// lexSize is the size of the open-addressing lexicon table (a power of
// two, at least twice the number of words).
const lexSize = 4096

// lexTable is the lexicon keyed by the word's hash: a lookup per word of
// every segment is on the hot path, and a string map costs several times
// more.
var lexTable = func() *[lexSize]lexEntry {
	var t [lexSize]lexEntry
	for w, e := range lexicon {
		h := fnvString(w)
		for k := h % lexSize; ; k = (k + 1) % lexSize {
			if t[k].word == "" {
				t[k] = e
				t[k].word = w
				break
			}
		}
	}
	return &t
}()

// lookup returns the lexicon entry of the lower-cased word w, whose hash
// is h, and whether it has one.
func lookup(h uint32, w []byte) (lexEntry, bool) {
	for k := h % lexSize; lexTable[k].word != ""; k = (k + 1) % lexSize {
		if lexTable[k].word == string(w) {
			return lexTable[k], true
		}
	}
	return lexEntry{}, false
}

func fnvString(s string) uint32 {
	h := uint32(fnvOffset)
	for i := 0; i < len(s); i++ {
		h = fnvByte(h, s[i])
	}
	return h
}

var lexicon = func() map[string]lexEntry {
	m := map[string]lexEntry{}
	add := func(c cue, class byte, words string) {
		for _, w := range strings.Fields(words) {
			e := m[w]
			e.c |= c
			if e.class == classSelf || class != classSelf && class != classVerb {
				e.class = class
			}
			m[w] = e
		}
	}
	// Verbs first: a word that is also a cue noun ("email", "text") takes
	// the noun's class.
	add(0, classVerb, `accept add adjust advise agree allow analyze analyse answer append apply approve arrange ask
		assign attach avoid begin believe block book bring build buy calculate call cancel change check choose
		clean clear click close collect combine come compare compile complete compose confirm connect consider
		contact continue convert copy correct count create cut decide decline decrease define delete deliver
		describe design detect determine disable discuss display do donate download drop edit embed emphasize
		enable encourage encrypt ensure enter erase estimate evaluate examine execute expand explain export
		extract fetch fill find finish fix follow forget format forward gather generate get give go grab grant
		greet guess handle help hide highlight identify ignore imagine implement import improve include increase
		indicate inform insert install integrate introduce invite join keep kill leave let like limit link list
		load locate lock log look make manage mark mention merge modify move name navigate note notify obtain
		open order organize organise output paste pay perform pick place plan play post prefer prepare present
		print proceed process promote provide publish purchase put query raise rank rate read recall receive
		recommend record redirect reduce refer refresh register reject release remember remind remove rename
		repeat rephrase replace reply report request reserve reset resolve respond restart restore retrieve
		return reveal review rewrite run save say schedule search see select sell send set share show sign skip
		sort specify spell start stop store subscribe suggest summarize summarise supply support switch take talk
		teach tell test thank think transfer translate transmit treat try turn type unlock update upgrade upload
		use verify visit wait want warn wire withdraw write`)
	add(cueAction, classVerb, `send email forward transfer pay wire deposit withdraw donate delete remove erase
		update change modify set grant give share post publish upload download invite add create make
		book reserve buy purchase sell order cancel unlock lock open close disable enable turn move
		redirect schedule access retrieve get fetch find list read search check tell reply respond
		answer write translate summarize summarise mention include provide ensure insert execute run
		install click visit navigate go call text message follow subscribe approve accept print output
		say repeat reveal show display export save store copy attach replace rename sign register reset
		apply assign release increase decrease adjust allow block report leave join grab collect
		compile gather use transmit deliver contact notify recommend promote advertise answer respond
		incorporate append prepend start stop kill shut disconnect format encrypt decrypt`)
	add(cuePolite, classSelf, `please kindly plz pls`)
	add(cueLeadIn, classSelf, `please kindly plz pls now then also first next finally and so just immediately instead again always`)
	add(cueFirstPerson, classSelf, `my me mine our myself`)
	add(cueSecondPerson, classSelf, `you your yourself you're yours`)
	add(cueOverride, classSelf, `ignore disregard forget instead instruction instructions override bypass previous prior above earlier`)
	add(cueModal, classSelf, `must should need needs immediately urgent urgently important asap now`)
	add(cueDestination, classDest, `email e-mail address url website link account inbox phone number iban channel server`)
	add(cueReader, classAI, `assistant ai model agent chatbot bot llm gpt chatgpt claude gemini`)
	add(cueReply, classReply, `response reply answer output responses replies answers outputs solution`)
	// Closed-class words stand for themselves in the form n-grams.
	add(0, classSelf, `the a an this that these those it its it's there here all any every each some no none
		other another such same own only just also too very more most much many few
		to of in on at for with from by about into onto over under through between within without
		and or but nor if then else than so as because unless until while when whenever where wherever
		before after once again always never first next finally later soon
		is are was were be been being am do does did done don't doesn't didn't not can can't cannot could
		will won't would shall may might i i'm i'll i've we we're us he she him her his they them their
		what which who whom whose why how let let's following below user users user's new real actual`)
	return m
}()
