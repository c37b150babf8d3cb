/** outpost's version: the server reports it, the CLI prints it. */
export const VERSION = "0.1.0";
