"""Every default setting, once: the library's settings objects (:class:`taskvec.prompts.PromptFormat`,
:class:`taskvec.prompts.SplitSizes`, :class:`taskvec.compute.Compute`) and the command-line options
take their defaults from here. It imports nothing, so that building every parser runs no library code.
params.yaml states the study's own values in full."""

# The prompt format (the paper's)
DEMONSTRATION = "example:{x}->{y}"
QUERY = "example:{x}->"
SEPARATOR = "\n"
MAX_ANSWER_TOKENS = 10  # the strict metric's generation stops at the separator or after this many tokens

# The splits: demonstrations per prompt, prompts per split, dummy queries averaged into each theta
K = 5
BASELINE = 100
DEV = 50
TEST = 50
DUMMIES = 2

# Where and how a step computes
DEVICE = "auto"
DTYPE = "auto"
BATCH_SIZE = 64
THREADS = 0

# A one-off task vector (`taskvec vector`, taskvec.api): demonstration sets theta is averaged over
CONTEXTS = 8

# The methods compared: demonstration sets in each task's pool
POOL = 10

# implicit ICL's training steps: its authors' 100 epochs of 10 demonstrations, batches of 2
CALIBRATION_STEPS = 500
