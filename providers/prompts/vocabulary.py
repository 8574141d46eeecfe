"""The vocabulary the prompt builder matches and writes: keyword tables, styles, camera moves.

Tables: "|" separates keywords, "/" a skill's aliases. Matching is case-insensitive, on whole words,
tolerant of plurals; at one spot the longest keyword wins (`extract._Matcher`).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

# fmt: off
ROLES = {  # industry -> role phrases; "general" roles name no industry
    "tech": "software engineer|software developer|developer|programmer|web developer|data scientist|"
        "data analyst|data engineer|machine learning engineer|devops engineer|site reliability engineer|"
        "product manager|QA engineer|security engineer|systems administrator",
    "healthcare": "nurse|registered nurse|nurse practitioner|midwife|doctor|physician|surgeon|pharmacist|"
        "general practitioner|physiotherapist|paramedic|therapist|dentist|healthcare assistant",
    "education": "teacher|lecturer|professor|tutor|teaching assistant|educator|headteacher",
    "design": "designer|UX designer|UI designer|product designer|graphic designer|art director|illustrator|"
        "animator|photographer|creative director",
    "marketing": "marketing manager|marketer|brand manager|content strategist|copywriter|SEO specialist|"
        "social media manager|marketing executive|communications manager",
    "sales": "sales executive|account executive|sales manager|sales representative|account manager|"
        "business development manager|sales director|sales associate",
    "finance": "accountant|financial analyst|auditor|banker|investment analyst|financial controller|"
        "actuary|economist|bookkeeper|trader|finance manager",
    "engineering": "engineer|mechanical engineer|civil engineer|electrical engineer|structural engineer|"
        "chemical engineer|technician",
    "legal": "lawyer|solicitor|attorney|paralegal|barrister|legal counsel|judge|compliance officer",
    "hospitality": "chef|sous chef|hotel manager|restaurant manager|sommelier|barista|concierge|bartender",
    "general": "project manager|program manager|programme manager|consultant|researcher|scientist|analyst",
}
SENIORITY = {
    "junior": "junior|graduate|intern|internship|trainee|apprentice|entry-level|entry level",
    "mid": "mid-level|mid level|intermediate",
    "senior": "senior|experienced|seasoned",
    "lead": "lead|team lead|tech lead|principal|head of|manager|supervisor",
    "executive": "director|vice president|vp|chief|ceo|cto|cfo|coo|cmo|founder|co-founder|c-suite",
}
INDUSTRIES = {  # industry -> keywords; its usual setting is in USUAL_SETTING
    "tech": "software|saas|cloud|startup|api|devops|cybersecurity|machine learning|ai|web|backend|frontend|"
        "database|mobile app|open source",
    "finance": "finance|financial|bank|banking|investment|accounting|audit|fintech|trading|tax|insurance",
    "healthcare": "healthcare|health care|hospital|patient|clinical|clinic|medical|nursing|pharmacy|"
        "surgery|ward|medicine",
    "education": "education|school|teaching|student|pupil|classroom|curriculum|university|college|lesson|"
        "academic|tutoring",
    "design": "design|creative|ux|ui|branding|typography|illustration|figma|adobe|visual identity|"
        "photography|animation",
    "marketing": "marketing|campaign|brand|seo|social media|content strategy|advertising|public relations|"
        "audience|engagement",
    "sales": "sales|quota|pipeline|revenue|client|b2b|deal|crm|salesforce|business development|negotiation|"
        "prospecting",
    "engineering": "engineering|mechanical|civil|electrical|structural|manufacturing|cad|autocad|"
        "solidworks|construction|infrastructure|aerospace|automotive",
    "legal": "legal|law|litigation|contract|compliance|court|regulatory|counsel",
    "hospitality": "hospitality|hotel|restaurant|guest|kitchen|catering|tourism|front desk",
}
USUAL_SETTING = {"tech": "office", "finance": "office", "healthcare": "hospital", "education": "classroom",
                 "design": "studio", "marketing": "studio", "sales": "office", "engineering": "factory",
                 "legal": "courtroom", "hospitality": "restaurant"}
SETTINGS = {  # setting -> keywords; how it looks is in SETTING_LOOKS
    "office": "office|boardroom|headquarters|meeting room|coworking", "studio": "studio|atelier",
    "lab": "lab|laboratory|research facility|clean room",
    "outdoors": "outdoors|outdoor|fieldwork|in the field|construction site|on site",
    "hospital": "hospital|clinic|ward|icu|emergency department|a&e|operating theatre|care home",
    "classroom": "classroom|school|lecture hall|campus|university|college",
    "restaurant": "restaurant|kitchen|hotel|café|cafe|lobby", "courtroom": "court|courtroom|law firm",
    "factory": "factory|workshop|warehouse|production line|manufacturing plant",
    "stage": "stage|conference|keynote|auditorium",
}
SETTING_LOOKS = {
    "office": "a bright modern office with glass walls", "lab": "a clean, well-lit laboratory",
    "studio": "a creative studio with mood boards and large screens", "outdoors": "an open site in daylight",
    "hospital": "a calm, modern hospital ward", "classroom": "a bright, busy classroom",
    "restaurant": "a warmly lit restaurant and hotel lobby", "courtroom": "a stately wood-panelled courtroom",
    "factory": "a modern factory floor with machinery", "stage": "a conference stage under soft spotlights",
}
SKILLS = (
    "Python|Java|JavaScript|TypeScript|Rust|C++|C#|SQL|React|Node.js|AWS|Azure|GCP|Docker|Kubernetes|"
    "Terraform|machine learning|data analysis|Excel|Tableau|Power BI|Figma|Photoshop|Illustrator|InDesign|"
    "UX research|prototyping|typography|branding|SEO|Google Analytics|copywriting|social media|CRM|"
    "Salesforce|HubSpot|negotiation|prospecting|account management|patient care|triage|wound care|"
    "medication administration|phlebotomy|lesson planning|curriculum design|classroom management|"
    "safeguarding|financial modelling/financial modeling|budgeting|forecasting|auditing|AutoCAD|"
    "SolidWorks|project management|Agile|Scrum|leadership|mentoring|public speaking|"
    "stakeholder management|customer service|contract law|litigation|compliance|event planning"
)
ACHIEVEMENT_VISUALS = {  # visual -> the action verbs that call for it
    "a team gathered around a confident leader": "led|managed|mentored|coached|supervised|headed",
    "a product launch moment with an engaged audience": "launched|shipped|released|introduced|rolled out",
    "rising growth charts on a large screen": "grew|increased|doubled|tripled|boosted|raised|exceeded|won",
    "clean dashboards showing efficiency gains":
        "reduced|cut|saved|lowered|streamlined|improved|optimised|optimized|automated",
    "a workspace where something new takes shape": "built|created|designed|developed|founded|established",
    "a moment of recognition and applause": "awarded|recognised|recognized|promoted|certified",
}
FIGURES_VISUAL = "headline figures glowing on a display"
# fmt: on


@dataclass(frozen=True)
class StyleTemplate:
    modifiers: tuple[str, ...]
    motion: str  # the camera motion used when the caller names none


# fmt: off
STYLES = MappingProxyType({
    "professional": StyleTemplate(("clean, polished corporate look", "soft key lighting", "neutral palette",
                                   "sharp focus", "subtle movement"), "zoom"),
    "friendly": StyleTemplate(("warm, cinematic look", "golden-hour tones", "shallow depth of field",
                               "approachable mood", "smooth camera"), "pan"),
    "energetic": StyleTemplate(("dynamic, vibrant look", "bold saturated colour", "high contrast",
                                "creative angles", "upbeat pacing"), "tilt"),
})
CAMERA_MOTIONS = MappingProxyType({  # motion -> words for low (< 1/3), medium and high (>= 2/3) intensity
    "pan": ("slow, subtle pan", "smooth, steady pan", "sweeping pan"),
    "zoom": ("slow, gentle push-in", "steady zoom in", "fast, dramatic zoom"),
    "tilt": ("slight, slow tilt", "smooth tilt up", "bold, sweeping tilt"),
    "static": ("locked-off static shot", "static camera, steady framing", "static, lively subject motion"),
})
# fmt: on
