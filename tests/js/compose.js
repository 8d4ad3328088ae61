// SPDX-License-Identifier: EUPL-1.2
// Composes message objects as ZoneMTA's POST /send does: Nodemailer's
// MailComposer with file and URL access off, line ends made CRLF.
// Reads a JSON array of message objects on stdin; writes a JSON array of
// {envelope, message (base64)} or {error} on stdout, one per object.
'use strict';

const MailComposer = require('nodemailer/lib/mail-composer');

function compose(data) {
    return new Promise(resolve => {
        try {
            data.disableFileAccess = true;
            data.disableUrlAccess = true;
            const mail = new MailComposer(data).compile();
            const envelope = mail.getEnvelope();
            mail.build((err, message) => {
                if (err) {
                    return resolve({ error: err.message });
                }
                const crlf = message.toString('binary').replace(/\r?\n/g, '\r\n');
                resolve({ envelope, message: Buffer.from(crlf, 'binary').toString('base64') });
            });
        } catch (err) {
            resolve({ error: err.message });
        }
    });
}

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', chunk => (input += chunk));
process.stdin.on('end', async () => {
    const results = [];
    for (const data of JSON.parse(input)) {
        results.push(await compose(data));
    }
    process.stdout.write(JSON.stringify(results));
});
