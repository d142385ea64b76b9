"""The Gemini API's request fields: what each becomes in the common chat model (translated,
dropped, refused), and what a request written from the model leaves out."""

from __future__ import annotations

from typing import Literal

from tollgate.formats import GEMINI_GENERATE

NAME = GEMINI_GENERATE

Disposition = Literal["translated", "dropped", "refused"]
_T: Disposition = "translated"
_D: Disposition = "dropped"
_R: Disposition = "refused"

# What a request's fields become, object by object (camelCase names; the snake_case spellings are read
# alike). Translated fields may still refuse some values (see the notes in `FIELD_NOTES`); dropped ones
# are named in `ChatRequest.dropped`; refused ones, and any field not listed, raise Untranslatable.
REQUEST_FIELDS: dict[str, dict[str, Disposition]] = {
    "": {
        "contents": _T,
        "systemInstruction": _T,
        "tools": _T,
        "toolConfig": _T,
        "generationConfig": _T,
        "safetySettings": _D,
        "labels": _D,
        "serviceTier": _D,
        "store": _D,
        "cachedContent": _R,  # refers to server state
        "continuationToken": _R,
    },
    "contents[]": {"role": _T, "parts": _T},
    "contents[].parts[]": {
        "text": _T,
        "thought": _T,
        "thoughtSignature": _T,
        "inlineData": _T,
        "fileData": _T,
        "functionCall": _T,
        "functionResponse": _T,
        "mediaResolution": _D,
        "partMetadata": _D,
        "executableCode": _R,
        "codeExecutionResult": _R,
        "videoMetadata": _R,
        "toolCall": _R,
        "toolResponse": _R,
    },
    "contents[].parts[].inlineData": {"mimeType": _T, "data": _T, "displayName": _D},
    "contents[].parts[].fileData": {"mimeType": _T, "fileUri": _T, "displayName": _D},
    "contents[].parts[].functionCall": {"name": _T, "args": _T, "id": _T, "partialArgs": _R, "willContinue": _R},
    "contents[].parts[].functionResponse": {
        "name": _T,
        "response": _T,
        "id": _T,
        "parts": _R,
        "willContinue": _R,
        "scheduling": _R,
    },
    "systemInstruction": {"parts": _T, "role": _T},
    "systemInstruction.parts[]": {"text": _T},
    "tools[]": {
        "functionDeclarations": _T,
        "googleSearch": _R,
        "googleSearchRetrieval": _R,
        "codeExecution": _R,
        "urlContext": _R,
        "retrieval": _R,
        "fileSearch": _R,
        "googleMaps": _R,
        "computerUse": _R,
        "enterpriseWebSearch": _R,
        "mcpServers": _R,
    },
    "tools[].functionDeclarations[]": {
        "name": _T,
        "description": _T,
        "parameters": _T,
        "parametersJsonSchema": _T,
        "response": _D,
        "responseJsonSchema": _D,
        "behavior": _R,
    },
    "toolConfig": {"functionCallingConfig": _T, "retrievalConfig": _D, "includeServerSideToolInvocations": _D},
    "toolConfig.functionCallingConfig": {"mode": _T, "allowedFunctionNames": _T, "streamFunctionCallArguments": _D},
    "generationConfig": {
        "temperature": _T,
        "topP": _T,
        "topK": _T,
        "maxOutputTokens": _T,
        "stopSequences": _T,
        "candidateCount": _T,
        "seed": _T,
        "presencePenalty": _T,
        "frequencyPenalty": _T,
        "responseMimeType": _T,
        "responseSchema": _T,
        "responseJsonSchema": _T,
        "responseLogprobs": _T,
        "logprobs": _T,
        "thinkingConfig": _T,
        "responseModalities": _T,
        "speechConfig": _D,  # only for audio answers, which responseModalities refuses
        "imageConfig": _D,  # only for image answers, likewise
        "audioTimestamp": _D,
        "mediaResolution": _D,
        "enableEnhancedCivicAnswers": _D,
        "routingConfig": _R,  # picks another model than the path's
        "modelSelectionConfig": _R,
        "enableAffectiveDialog": _R,
    },
    "generationConfig.thinkingConfig": {"thinkingBudget": _T, "includeThoughts": _T, "thinkingLevel": _T},
}

# Every request field by its path, for the docs.
FIELDS: dict[str, Disposition] = {
    f"{level}.{name}" if level else name: disposition
    for level, table in REQUEST_FIELDS.items()
    for name, disposition in table.items()
}

# Where a translated field refuses some values, or what it becomes.
FIELD_NOTES: dict[str, str] = {
    "contents[].role": "user, model, function (read as user); absent reads as user",
    "contents[].parts[].thought": "thought text → Thinking; written only in answers and streams",
    "contents[].parts[].thoughtSignature": "→ Thinking.signature, placed before the part that carried it; "
    "another provider's, sealed, is unsealed",
    "contents[].parts[].inlineData": "images only; other media types are refused",
    "contents[].parts[].fileData": "images only (Image.url = fileUri); other media types are refused",
    "contents[].parts[].functionCall.id": "absent → call_<n>, n its position among the contents' calls",
    "contents[].parts[].functionResponse.id": "absent → the latest unanswered call of that name",
    "tools[].functionDeclarations[].parameters": "OpenAPI subset → JSON Schema; written as parametersJsonSchema",
    "toolConfig.functionCallingConfig.mode": "AUTO/VALIDATED → auto, NONE → none, ANY → required",
    "toolConfig.functionCallingConfig.allowedFunctionNames": "one name with ANY → that tool; several → refused",
    "generationConfig.candidateCount": "→ n",
    "generationConfig.responseMimeType": "application/json → json (json_schema with a schema), text/plain → none",
    "generationConfig.responseSchema": "OpenAPI subset, turned to JSON Schema; written as responseJsonSchema",
    "generationConfig.responseLogprobs": "→ logprobs",
    "generationConfig.logprobs": "→ top_logprobs",
    "generationConfig.responseModalities": "only [TEXT]",
    "generationConfig.thinkingConfig.thinkingBudget": "→ thinking_budget (-1, dynamic, reads as unset)",
    "generationConfig.thinkingConfig.thinkingLevel": "minimal/low/medium/high → reasoning_effort",
}

# Written from the model: what the Gemini API cannot carry and is left out, by ChatRequest field.
WRITE_DROPPED = (
    "parallel_tool_calls",
    "user",
    "tools[].strict",
    "thinking in history",
    "thinking signed by another provider",
)
