import os

if os.environ.get("RANK", "0") != "0":  # torchrun's other ranks draw no progress bars; tqdm reads this
    os.environ["TQDM_DISABLE"] = "1"    # when it is first imported (by torch), so before anything else

from lib.cli import main  # noqa: E402

raise SystemExit(main())
