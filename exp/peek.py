import json, sys, glob, os
root = sys.argv[1]
for d in sorted(glob.glob(root + "/runs/*")):
    cfg = open(d + "/config.yaml").read()
    import yaml
    c = yaml.safe_load(cfg)
    st = json.load(open(d + "/status.json"))
    rows = [json.loads(l) for l in open(d + "/metrics.jsonl")] if os.path.exists(d + "/metrics.jsonl") else []
    print(os.path.basename(d), "n", c["data"]["n"], "lr", c["optim"]["lr"], "ema", c["train"]["ema_decay"], "ch", c["model"]["channels"], "B", c["train"]["batch_size"], st["state"], st.get("step"), "train_s", st.get("train_seconds"), "eval_s", st.get("eval_seconds"))
    for r in rows:
        print("   ", r["step"], "tr %.3f te %.3f mem %.3f sw %.4f" % (r["train_loss"], r["test_loss"], r["mem_ratio"], r["sw_test"]))
