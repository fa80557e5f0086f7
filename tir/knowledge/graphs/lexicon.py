"""Word lists for pedestrian descriptions: who the person is, what they wear, what describes it.

Plain data used by the rules; every entry is lower case.
"""

from __future__ import annotations

PERSON_NOUNS = frozenset(
    "man woman lady girl boy kid male female person individual student guy gentleman child teenager teen "
    "adult pedestrian someone somebody people worker men women ladies girls boys guys gentlemen".split()
)
# pronoun -> the person head used when the caption never names the person
PERSON_PRONOUNS = {
    "he": "man", "him": "man", "himself": "man", "she": "woman", "her": "woman", "herself": "woman",
    "they": "person", "them": "person", "who": "person", "whom": "person",
}
POSSESSIVES = frozenset("his her their its my your whose".split())
IT_PRONOUNS = frozenset("it".split())

PLURAL_ONLY = frozenset(
    "pants jeans shorts glasses sunglasses trousers leggings slacks capris clothes bangs woods tights "
    "overalls sweatpants joggers khakis spectacles goggles bottoms".split()
)
# words written apart or misspelt -> the normalised head
SPELLING = {
    "t shirt": "t-shirt", "tshirt": "t-shirt", "t-shirt": "t-shirt", "tee shirt": "t-shirt", "tee-shirt": "t-shirt",
    "teeshirt": "t-shirt", "t-shirts": "t-shirt", "tshirts": "t-shirt", "tee": "t-shirt", "tees": "t-shirt",
    "back pack": "backpack", "back-pack": "backpack", "backpacks": "backpack", "hand bag": "handbag",
    "hand-bag": "handbag", "handbg": "handbag", "hand bags": "handbag", "pony tail": "ponytail", "pony-tail": "ponytail",
    "flip flop": "flip-flop", "flip flops": "flip-flop", "flip-flops": "flip-flop", "flipflops": "flip-flop",
    "sun glasses": "sunglasses", "sweat shirt": "sweatshirt", "sweat-shirt": "sweatshirt", "rain coat": "raincoat",
    "sweat pants": "sweatpants", "sweat-pants": "sweatpants", "polo shirt": "shirt", "hoody": "hoodie",
    "tank top": "top", "tank tops": "top", "tank-top": "top", "polo shirts": "shirt",
    "cellphone": "phone", "cell-phone": "phone", "headphone": "headphones", "earphone": "earphones",
    "wristwatch": "watch", "bicycle": "bicycle", "snekers": "sneaker", "sneakers": "sneaker",
    "sihrt": "shirt", "shrit": "shirt", "shirst": "shirt", "shoe's": "shoe", "jens": "jeans", "jeanes": "jeans",
    "pans": "pants", "pnts": "pants", "trouser": "trousers", "legging": "leggings", "capri": "capris",
    "sandles": "sandal", "sandle": "sandal", "jaket": "jacket", "jackte": "jacket", "sweather": "sweater",
    "bagpack": "backpack", "backbag": "backpack", "blazer": "blazer", "shoues": "shoe", "shose": "shoe",
    "sleeves": "sleeve", "trainers": "sneaker",
}
# two-word modifiers merged into one token before parsing, so the tagger cannot read them as a verb and its
# particle ("button down", "cut off") or as an object ("polka dot"); normalised through HYPHENATED
JOINED_MODIFIERS = frozenset(
    "button down|button up|cut off|polka dot|knee length|shoulder length|thigh length|ankle length|see through|"
    "slip on|tight fitting|loose fitting|two toned|two tone|multi color|multi colored|multi colour|"
    "multi coloured".split("|")
)
# two-token sequences that form one head (merged before parsing)
JOINED = frozenset(k for k in SPELLING if " " in k) | JOINED_MODIFIERS

GARMENTS = frozenset(
    "shirt t-shirt blouse top jacket coat sweater hoodie sweatshirt vest dress skirt pants jeans shorts trousers "
    "leggings slacks capris shoe sneaker boot sandal slipper heel flip-flop loafer hat cap beanie scarf glove "
    "sock stocking tights belt tie suit uniform cardigan blazer jumpsuit overalls tank outfit clothes windbreaker "
    "parka raincoat poncho apron robe gown jersey polo tunic kimono sweatpants joggers headband bandana hood "
    "collar sleeve pocket zipper strap button logo stripe pattern print graphic writing design letter word "
    "backpack bag handbag purse wallet umbrella phone bottle glasses sunglasses watch bracelet necklace earring "
    "mask helmet headphones earphones scooter bike bicycle motorcycle stroller suitcase luggage box cup "
    "camera book paper folder laptop tablet wheelchair cart basket sole trim hem lace shoelace ponytail briefcase "
    "clutch".split()
)
# things worn or carried on the body (a list "in a shirt, jeans, ..." only continues with these)
WEARABLES = frozenset(
    "shirt t-shirt blouse top jacket coat sweater hoodie sweatshirt vest dress skirt pants jeans shorts trousers "
    "leggings slacks capris shoe sneaker boot sandal slipper heel flip-flop loafer hat cap beanie scarf glove "
    "sock stocking tights belt tie suit uniform cardigan blazer jumpsuit overalls tank outfit clothes windbreaker "
    "parka raincoat poncho apron robe gown jersey polo tunic kimono sweatpants joggers headband bandana bottoms "
    "khakis backpack bag handbag purse glasses sunglasses watch bracelet necklace earring mask helmet headphones".split()
)
BODY_PARTS = frozenset(
    "hair head face arm hand shoulder leg foot knee waist neck back ear wrist finger beard mustache moustache "
    "ponytail bangs bun braid eye mouth nose chest hip body side skin forehead elbow ankle thigh calf toe".split()
)
# garment parts and printed items: after `with` they belong to the garment, not the person
GARMENT_PARTS = frozenset(
    "sleeve sole trim hood zipper pocket strap button collar logo pattern print graphic writing design letter "
    "word image picture stripe dot stripes dots cuff lining hem lace fur buckle drawstring emblem text number "
    "flower flowers star heart decoration detail details accent patch badge wording lettering name brand".split()
)
LOCATION_NOUNS = frozenset(
    "front side top bottom middle center centre area part left right end edge corner rest toe underside view "
    "background foreground distance direction way place time".split()
)
NON_OBJECTS = frozenset(
    "color colour shade tone style kind sort type lot bit one pair piece set length size shape look appearance "
    "fashion manner photo photograph picture".split()
) | LOCATION_NOUNS

COLOURS = frozenset(
    "black white gray grey red blue green yellow orange purple pink brown tan beige khaki navy maroon violet "
    "cream silver gold golden teal turquoise burgundy olive magenta cyan lavender indigo ivory charcoal coral "
    "peach mint blond blonde brunette auburn ginger dark light bright pale multicolored multi-colored "
    "colorful colourful blueish bluish greenish reddish pinkish grayish greyish brownish yellowish purplish "
    "whitish blackish camel crimson rust mustard salmon denim-blue plum".split()
)
SHADES = frozenset("dark light bright pale deep medium lighter darker navy royal baby sky hot neon dull dusty soft faded".split())
MATERIALS = frozenset(
    "jean denim leather plastic cotton wool woolen woollen silk suede fur furry knit knitted lace canvas nylon "
    "corduroy velvet linen rubber metal straw fleece mesh satin cloth paper".split()
)
# words that are never attributes (determiners, numbers, age, gender, race, position, brands, relational)
NOT_ATTRIBUTES = frozenset(
    "a an the some any both two three four other another second first each every several many few all no "
    "this that these those such same different matching similar young old older younger elderly adult aged "
    "middle-aged teenage little male female boyish girlish white-skinned asian caucasian african indian "
    "american european chinese hispanic latino fair-skinned dark-skinned light-skinned skinned left right "
    "front back rear center central middle top bottom upper lower side inner outer nike adidas puma reebok "
    "converse vans gucci visible unknown unclear possible main whole entire overall usual normal certain "
    "own various full half -".split()
)
PERSON_ONLY_NOT_ATTRIBUTES = COLOURS | frozenset("black white brown yellow dark light fair pale tanned".split())

SLEEVE_LENGTHS = {"short": "short", "long": "long", "quarter": "quarter", "3/4": "quarter", "three-quarter": "quarter",
                  "half": "short", "cap": "cap"}
# spelt with a space or run together -> hyphenated
HYPHENATED = {
    "tight fitting": "tight-fitting", "loose fitting": "loose-fitting", "button up": "button-up",
    "button down": "button-down", "cut off": "cut-off", "see through": "see-through", "slip on": "slip-on",
    "thigh length": "thigh-length", "knee length": "knee-length", "shoulder length": "shoulder-length",
    "ankle length": "ankle-length", "polka dot": "polka-dot", "multi colour": "multi-colored", "multi coloured": "multi-colored",
    "two toned": "two-toned", "two tone": "two-toned", "two-tone": "two-toned", "multi color": "multi-colored",
    "multi colored": "multi-colored", "multicolor": "multi-colored", "multi-color": "multi-colored",
    "multicolored": "multi-colored", "multicoloured": "multi-colored", "multi-coloured": "multi-colored",
    "buttonup": "button-up", "buttondown": "button-down", "cutoff": "cut-off", "seethrough": "see-through",
    "tightfitting": "tight-fitting", "stripe": "striped", "stripes": "striped", "print": "printed",
    "plaid": "plaid", "chequered": "checkered",
}
PATTERNS = frozenset(
    "striped plaid checked checkered printed floral polka-dot dotted spotted camouflage camo flowered vertical "
    "horizontal diagonal".split()
)
# gerunds that say what an item is for ("running shoes", "walking stick"): noun-compound modifiers, dropped
PURPOSE_GERUNDS = frozenset(
    "running walking jogging hiking riding shopping sleeping swimming reading climbing skating cycling training "
    "bowling dancing fishing hunting driving skiing".split()
)
# number words that make one written noun several objects ("two shirts")
COUNTS = {"two": 2, "three": 3, "2": 2, "3": 3}
# words that only ever describe a thing, even where the tagger calls them nouns ("her hair is shoulder-length")
ATTRIBUTE_WORDS = frozenset(HYPHENATED.values()) | PATTERNS

# verb lemma fixes for the small model's mistakes
VERB_LEMMAS = {"rid": "ride", "wore": "wear", "worn": "wear", "dressed": "dress"}
# frequent verb forms -> lemma: a word one typo away from one of them is that verb ("waering", "carying")
VERB_FORMS = {"wearing": "wear", "carrying": "carry", "carries": "carry", "holding": "hold"}
COPULAS = frozenset("be seem appear".split())

# indefinite things: objects in their own right ("holding something in his hand")
INDEFINITE_THINGS = frozenset("something object item thing".split())
# garments worn on the torso: what goes "over" or "under" them; a list after "a jacket over a shirt" that goes on
# with anything else ("..., jeans and boots") lists what the person wears
UPPER_BODY = frozenset(
    "shirt t-shirt blouse top jacket coat sweater hoodie sweatshirt vest dress cardigan blazer tank polo jersey "
    "tunic uniform windbreaker parka raincoat poncho jumpsuit gown robe".split()
)
# garment words that name a kind of the next garment ("suit jacket", "dress shoes"): compound modifiers there
GARMENT_COMPOUNDS = frozenset("suit dress tank polo jersey sweat sport tie uniform".split())
# verbs whose doer is a person: a garment or a bag they seem to attach to ("a man with a bag wearing a coat") is wrong
PERSON_VERBS = frozenset("wear carry hold push ride walk run jog stand sit talk look dress".split())
# verbs that keep "in" in the predicate before a garment ("dressed in"); other verbs give plain "in" ("walking in")
DRESS_VERBS = frozenset("dress clothe clad".split())
# "dressed like a businessman", "looks like a tourist": a comparison, not a second person in the picture
COMPARISON_PREPS = frozenset("like as".split())
COMPARISON_VERBS = frozenset("dress clothe clad look appear seem".split())
# attribute words that are fixed when misspelt (balck, whtie, verticle); words that look like typos but are real
ATTRIBUTE_TYPO_TARGETS = frozenset(
    "black white brown green purple orange yellow beige khaki maroon blue gray grey pink navy striped plaid "
    "checkered floral vertical horizontal".split()
)
ATTRIBUTE_SPELLING = {"verticle": "vertical", "verticel": "vertical", "horizonal": "horizontal", "stripped": "striped"}
REAL_WORDS_NEAR_ATTRIBUTES = frozenset(
    "back lack brow brows range ranges fellow while write whine crown grown frown drown blank block slack glue "
    "clue blur pray prey tray grew pick link wink pinky wavy gravy plain plan".split()
)
