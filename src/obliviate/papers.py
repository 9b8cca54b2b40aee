"""Papers cited by more than one module (one definition each)."""

from obliviate.types import Paper

TINYMEM = Paper("Mitigating Memorization in Language Models", "2410.02159", 2024, "Sakarvadia et al.")
PROVABLE_TOPIC_UNLEARNING = Paper("Provable unlearning in topic modeling and downstream tasks", "2411.12600", 2024,
                                  "Wei, Malladi, Arora, Sanyal")
LOTUS = Paper("LoTUS: Large-Scale Machine Unlearning with a Taste of Uncertainty", "2503.18314", 2025,
              "Spartalis, Semertzidis, Gavves, Daras")
SCRUB = Paper("Towards Unbounded Machine Unlearning", "2302.09880", 2023, "Kurmanji, Triantafillou, Hayes, Triantafillou")
BAD_TEACHER = Paper("Can Bad Teaching Induce Forgetting? Unlearning in Deep Networks using an Incompetent Teacher",
                    "2205.08096", 2023, "Chundawat, Tarun, Mandal, Kankanhalli")
SSD = Paper("Fast Machine Unlearning Without Retraining Through Selective Synaptic Dampening", "2308.07707", 2024,
            "Foster, Schoepf, Brintrup")
UNSIR = Paper("Fast Yet Effective Machine Unlearning", "2111.08947", 2023, "Tarun, Chundawat, Mandal, Kankanhalli")
SALUN = Paper("SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency in Both Image Classification "
              "and Generation", "2310.12508", 2024, "Fan, Liu, Zhang, Wei, Wong, Liu")
RANDOM_LABELING = Paper("Eternal Sunshine of the Spotless Net: Selective Forgetting in Deep Networks", "1911.04933",
                        2020, "Golatkar, Achille, Soatto")
MUSE = Paper("MUSE: Machine Unlearning Six-Way Evaluation for Language Models", "2407.06460", 2024,
             "Shi, Lee, Huang, Malladi, Zhao, Holtzman, Liu, Zettlemoyer, Smith, Zhang")
TOFU = Paper("TOFU: A Task of Fictitious Unlearning for LLMs", "2401.06121", 2024,
             "Maini, Feng, Schwarzschild, Lipton, Kolter")
