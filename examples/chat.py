"""Ask the quickstart gateway (`make run`) a question with the official OpenAI Python client.

    .venv/bin/python examples/chat.py [--url http://127.0.0.1:8080/v1] [--model food-review]

The gateway routes by model name: meta-llama/Llama-3.1-8B-Instruct and the LoRA alias food-review go to the llama
pool, Qwen/Qwen3-8B to the qwen pool; each pool's endpoint picker chooses the pod."""

import argparse

import openai


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--url", default="http://127.0.0.1:8080/v1", help="the gateway's OpenAI base URL (default: %(default)s)"
    )
    parser.add_argument(
        "--model", default="meta-llama/Llama-3.1-8B-Instruct", help="model to ask (default: %(default)s)"
    )
    parser.add_argument(
        "--prompt", default="Write a haiku about load balancing.", help="what to ask (default: a haiku)"
    )
    args = parser.parse_args()
    client = openai.OpenAI(base_url=args.url, api_key="unused")
    response = client.chat.completions.with_raw_response.create(
        model=args.model, messages=[{"role": "user", "content": args.prompt}], max_tokens=24
    )
    completion = response.parse()
    print(f"model:     {completion.model}")
    print(f"served by: {response.headers.get('x-poolgate-served-by')}")
    print(f"answer:    {completion.choices[0].message.content}")
    print(
        f"usage:     {completion.usage.prompt_tokens} prompt + {completion.usage.completion_tokens} completion tokens"
    )


if __name__ == "__main__":
    main()
